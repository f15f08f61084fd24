"""Hydra discovers sweepers only under `hydra_plugins`; the implementation lives in `detsim.training.sweeper`."""
