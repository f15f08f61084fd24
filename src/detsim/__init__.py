"""detsim: fast calorimeter simulation and CNN classifiers for physics data."""

from detsim.errors import ConfigError, DataFileError, DetsimError

__all__ = ["DetsimError", "DataFileError", "ConfigError"]
__version__ = "0.1.0"
