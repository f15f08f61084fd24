"""The Hydra plugin entry for detsim's Optuna sweeper (`hydra/sweeper=detsim_optuna`)."""

from detsim.training.sweeper import DetsimOptunaSweeper as _Impl


class DetsimOptunaSweeper(_Impl):
    """See `detsim.training.sweeper.DetsimOptunaSweeper`."""
