"""`detsim-upgrade-checkpoint`: convert a VAE checkpoint from before the package split, once (`detsim.upgrade`)."""

from __future__ import annotations

from omegaconf import DictConfig

from detsim.cli.app import hydra_app
from detsim.config import flag
from detsim.upgrade import upgrade_checkpoint


def upgrade(cfg: DictConfig) -> str:
    """Run one conversion from a composed `conf/upgrade_checkpoint.yaml`; return the output path."""
    out, changed = upgrade_checkpoint(cfg["in"], cfg["out"], flag(cfg.get("overwrite", False), "overwrite"))
    print(f"wrote {out}: " + ("converted to the current format" if changed else "already in the current format, unchanged"))
    return str(out)


@hydra_app("upgrade_checkpoint")
def main(cfg: DictConfig) -> str:
    return upgrade(cfg)


if __name__ == "__main__":
    main()
