"""detsim-simulate: run the simulator the `simulator` config group selects (calo showers, G2Net strain, ...).

  detsim-simulate geometry=calochallenge_ds1_photons particle=photon n=10000 seed=1 out=showers.h5
  detsim-simulate simulator=gw n=2000 seed=1 out=g2net_dir/
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from detsim.cli.app import hydra_app, positive_int


@hydra_app("simulate")
def main(cfg: DictConfig) -> object:
    positive_int(cfg.n, "n")  # n=0 would write a file detsim's own readers reject
    return hydra.utils.get_method(cfg.simulator.entry)(cfg)


if __name__ == "__main__":
    main()
