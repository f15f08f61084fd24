"""A generator as a graph: `ShowerGenerator.from_draws` with positional inputs, for torch.compile and the exporters.

`GraphGenerator` is what `torch.compile` compiles (`compile_generator`) and what `export.py` writes as ONNX or
TorchScript: the incident energies and every random number the sampler uses are its inputs, the whole batch
runs out of place, and nothing branches on data (whether the maps apply is fixed when it is built). Eager
generation (`ShowerGenerator.forward`) computes the same formula; tests/test_export.py compares the runtimes.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from detsim.runtime.generator import ShowerGenerator


def input_names(gen: ShowerGenerator) -> list[str]:
    """The graph's inputs in order: `incident_energy`, then the random numbers this generator draws."""
    return ["incident_energy", *gen.draw(1, torch.Generator().manual_seed(0), "cpu")]


class GraphGenerator(nn.Module):
    """`ShowerGenerator.from_draws` with positional inputs (`input_names`) and no data-dependent branch.

    rows_by_bin: order the rows by the voxel map's bin inside the graph (measured faster under torch.compile;
    not used for the exported graphs, where it was not measured).
    """

    def __init__(self, gen: ShowerGenerator, rows_by_bin: bool = False):
        super().__init__()
        self.gen = gen
        self.names = input_names(gen)[1:]
        self.map_active = bool(gen.voxel_map.active)  # fixed now: the graph carries the map or not
        self.energy_active = bool(gen.energy_map.active)
        self.rows_by_bin = rows_by_bin

    def forward(self, incident_energy: torch.Tensor, *randoms: torch.Tensor) -> torch.Tensor:
        return self.gen.from_draws(incident_energy, dict(zip(self.names, randoms)), self.map_active,
                                   self.energy_active, self.rows_by_bin)


def compile_generator(gen: ShowerGenerator) -> Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]:
    """`gen` compiled by torch.compile, called as `gen(incident_energy, rng)` is: the random numbers are drawn
    eagerly (`gen.draw`, the same numbers `gen` draws), the rest runs as one compiled graph.

    The compiled graph fuses the sampler's elementwise passes (~1.8x faster on CPU after tens of seconds of
    compiling, docs/vae.md); its showers are `gen`'s to float rounding. Compilation happens at the first call,
    which raises if it fails (e.g. no C++ compiler).
    """
    graph = torch.compile(GraphGenerator(gen, rows_by_bin=True))

    def run(incident_energy: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        draws = gen.draw(incident_energy.reshape(-1).shape[0], rng, incident_energy.device)
        return graph(incident_energy, *draws.values())

    return run
