"""detsim: fast calorimeter simulation and CNN classifiers for physics data."""

from detsim import _moved
from detsim.errors import ConfigError, DataFileError, DetsimError

_moved.install()

__all__ = ["DetsimError", "DataFileError", "ConfigError"]
__version__ = "0.1.0"
