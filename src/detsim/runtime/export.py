"""A trained generator as a self-contained graph for C++ hosts (Geant4 Par04-style, ONNX Runtime or LibTorch).

The graph's inputs are the incident energies and every random number the sampler uses, so the host owns
the random stream (as Par04 does), and batches of any size run through one graph:

| input | shape | dtype | what |
|---|---|---|---|
| `incident_energy` | (N,) | float32 | MeV |
| `normal` | (N, latent_dim) | float32 | standard normals for the latent prior |
| `member` | (N,) | float64 | uniforms in [0, 1): which stored posterior (only the fitted aggregate prior) |
| `uniform` | (N, n_voxels) | float32 | uniforms in [0, 1): hit and energy of each voxel (only the sampling heads) |

Output `showers` (N, n_voxels) float32 MeV: decoded, sampled, rescaled, voxel-mapped and zeroed below the
readout threshold, all inside the graph (the quantile map's tables are graph constants). The graph is
`graph.GraphGenerator`: for the same numbers it computes what `ShowerGenerator.from_draws` and eager
generation compute (one formula); `ShowerGenerator.draw` makes them in the order `detsim-generate` draws them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from detsim import extras
from detsim.errors import ConfigError
from detsim.files import atomic_output
from detsim.runtime.generator import ShowerGenerator
from detsim.runtime.graph import GraphGenerator, input_names

FORMATS = ("onnx", "torchscript")
OUTPUT = "showers"


def example_inputs(gen: ShowerGenerator, n: int, seed: int = 0,
                   energies: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Inputs for `n` showers (CPU): log-uniform energies over the model's range (or `energies`) and seeded draws."""
    rng = torch.Generator().manual_seed(seed)
    if energies is None:
        lo, hi = gen.condition.e_min_mev, gen.condition.e_max_mev
        energies = torch.exp(torch.empty(n).uniform_(0.0, 1.0, generator=rng) * (torch.log(torch.tensor(hi / lo)))) * lo
    draws = gen.draw(n, rng, "cpu")
    return (energies.to(torch.float32), *draws.values())


def export(gen: ShowerGenerator, out: str | Path, fmt: str, metadata: dict[str, str] | None = None) -> Path:
    """Write `gen` as an ONNX model or a TorchScript module with a dynamic batch dimension; return the path.

    ONNX: exported through torch.export (dynamo), opset 18+, with `metadata` and the input names in the
    model's metadata_props. TorchScript: traced (the graph has no data-dependent branch, so a trace is
    exact for every batch size); `metadata` goes into the archive's extra files as `detsim.json`.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"export format: expected one of {FORMATS}, found {fmt!r}")
    out = Path(out)
    module = GraphGenerator(gen.cpu().eval())
    names = input_names(module.gen)
    args = example_inputs(module.gen, 4)
    meta = {"inputs": ",".join(names), "output": OUTPUT, "n_voxels": str(module.gen.n_voxels),
            "latent_dim": str(module.gen.latent_dim), "readout_threshold_mev": repr(module.gen.threshold_mev),
            **(metadata or {})}
    with atomic_output(out) as tmp, torch.no_grad():  # a failed or killed export leaves no half graph behind
        if fmt == "onnx":
            _export_onnx(module, args, names, tmp, meta)
        else:
            traced = torch.jit.trace(module, args, check_trace=False)
            torch.jit.save(traced, str(tmp), _extra_files={"detsim.json": json.dumps(meta)})
    return out


def _export_onnx(module: GraphGenerator, args: tuple[torch.Tensor, ...], names: list[str], path: Path,
                 meta: dict[str, str]) -> None:
    onnx = extras.onnx()  # before torch.onnx: a missing extra is one line naming it, not torch's ImportError
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        module, args, input_names=names, output_names=[OUTPUT], dynamo=True, external_data=False,
        dynamic_shapes=({0: batch}, tuple({0: batch} for _ in args[1:])), verbose=False,
    )
    program.optimize()
    model = program.model_proto
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
