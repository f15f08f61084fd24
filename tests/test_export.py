"""`detsim-export`: ONNX (checked under onnxruntime) and TorchScript graphs of trained generators, and the one
generation formula they share with eager and compiled generation.

The graphs take the random numbers as inputs, so for the same numbers they must give torch's showers: the
TorchScript trace runs torch's own kernels, so bit for bit; torch.compile and onnxruntime fuse or reorder float
operations, so identical hit patterns and energies within 1e-4 relative. Per voxel, a few in 10^5 hits can
differ more: the energy of a hit comes from v = u / p, and for u just below p (v -> 1) the draw is
ill-conditioned in p, which the runtimes compute with different float32 matmul summation orders (docs/export.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import vae_kwargs

from detsim.config import compose_config
from detsim.errors import ConfigError
from detsim.models.vae import CaloVAE
from detsim.runtime import compile_generator
from detsim.runtime.export import example_inputs, export, input_names

ort = pytest.importorskip("onnxruntime")
FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


def generator(name: str):
    return CaloVAE.load_from_checkpoint(FIXTURES / f"calo_vae_{name}.ckpt", weights_only=True).eval().generator


def session(path: Path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as ATLAS's and Par04's hosts run it
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def assert_same_showers(got: np.ndarray, want: np.ndarray, threshold: float) -> None:
    hit = want > 0
    assert hit.sum() > 100 and np.array_equal(got > 0, hit)  # identical hit patterns
    assert got[got > 0].min() >= threshold  # the readout threshold is inside the graph
    diff = np.abs(got - want)
    assert (diff.sum(1) / want.sum(1)).max() < 1e-4  # each shower within 1e-4 relative
    assert (diff.max(1) / want.max(1)).max() < 1e-4
    rel = diff[hit] / want[hit]
    assert (rel > 1e-4).mean() < 1e-3 and rel.max() < 1e-2


@pytest.fixture(scope="module")
def default_onnx(tmp_path_factory) -> Path:
    """The default-config fixture (Weibull hurdle head, fitted prior, quantile map) through the real CLI."""
    out = tmp_path_factory.mktemp("export") / "generator.onnx"
    proc = subprocess.run([sys.executable, "-m", "detsim.cli.export", f"ckpt={FIXTURES / 'calo_vae_default.ckpt'}",
                           "format=onnx", f"out={out}", f"hydra.run.dir={out.parent / 'run'}"],
                          capture_output=True, text=True, cwd=out.parent, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "inputs incident_energy, normal, uniform -> showers" in proc.stdout
    return out


def test_onnx_graph_has_a_dynamic_batch_and_the_random_numbers_as_inputs(default_onnx):
    import onnx

    sess = session(default_onnx)
    inputs = {i.name: (i.shape, i.type) for i in sess.get_inputs()}
    assert inputs == {"incident_energy": (["batch"], "tensor(float)"), "normal": (["batch", 4], "tensor(float)"),
                      "uniform": (["batch", 368], "tensor(float)")}
    meta = {p.key: p.value for p in onnx.load(str(default_onnx)).metadata_props}
    assert meta["inputs"] == "incident_energy,normal,uniform" and float(meta["readout_threshold_mev"]) == 0.02
    assert meta["source"].endswith("calo_vae_default.ckpt")


@pytest.mark.parametrize("n", [1, 3, 1000])
def test_onnxruntime_gives_torchs_showers_for_the_host_random_numbers(default_onnx, n):
    gen = generator("default")
    names = input_names(gen)
    args = example_inputs(gen, n, seed=n)
    (got,) = session(default_onnx).run(None, {k: v.numpy() for k, v in zip(names, args)})
    with torch.no_grad():
        want = gen.from_draws(args[0], dict(zip(names[1:], args[1:]))).numpy()
    assert got.shape == (n, 368)
    if n == 1000:
        assert_same_showers(got, want, gen.threshold_mev)
    else:  # small batches: no hit may differ either
        assert np.array_equal(got > 0, want > 0) and np.allclose(got, want, rtol=1e-4, atol=0)


def test_the_host_stream_reproduces_detsim_generate(default_onnx, monkeypatch):
    """Numbers drawn in `ShowerGenerator.draw`'s order from a seed give what detsim-generate writes for it."""
    torch.set_num_threads(1)
    gen = generator("default")
    e = torch.as_tensor(2.0 ** np.random.default_rng(0).integers(8, 23, 600), dtype=torch.float32)
    draws = gen.draw(len(e), torch.Generator().manual_seed(11))
    (got,) = session(default_onnx).run(None, {"incident_energy": e.numpy(), **{k: v.numpy() for k, v in draws.items()}})
    with torch.inference_mode():
        want = gen(e, torch.Generator().manual_seed(11))
        plain = gen.from_draws(e, draws)
    assert torch.equal(plain, want)  # the same numbers in torch: bit for bit
    assert_same_showers(got, want.numpy(), gen.threshold_mev)
    # the per-voxel quantile map is in the graph: without it torch gives other showers
    gen.voxel_map.enabled = False
    with torch.no_grad():
        unmapped = gen.from_draws(e, draws).numpy()
    assert np.abs(unmapped - got).max() > 1e-2 * got.max()


@pytest.fixture(scope="module")
def current_default():
    """The default config as it is now (smooth width bound, parabolic tail, readout threshold), unlike the
    v0 fixture (hard bound, plain Weibull): weights spread to hit ~half the voxels, and a fitted quantile map
    whose tables are not the identity."""
    torch.manual_seed(0)
    gen = CaloVAE(**vae_kwargs("model.readout_threshold_mev=0.02", model="calo_vae")).eval().generator
    with torch.no_grad():
        for p in gen.decoder.parameters():
            p.mul_(1.5)
        gen.prior.loc.normal_(0.0, 0.5)
        gen.voxel_map.table.mul_(0.95).sub_(0.05)
        gen.voxel_map.step.mul_(0.95)
        gen.voxel_map.fitted.fill_(True)
    assert gen.decoder.head.width_bound == "smooth" and gen.decoder.head.tail_z is not None
    return gen


def test_the_current_default_head_exports_too(current_default, tmp_path):
    """The current head (smooth width bound in closed form, parabolic tail) and a fitted map export too."""
    gen = current_default
    names = input_names(gen)
    args = example_inputs(gen, 300, seed=3)
    (got,) = session(export(gen, tmp_path / "g.onnx", "onnx")).run(None, {k: v.numpy() for k, v in zip(names, args)})
    with torch.no_grad():
        want = gen.from_draws(args[0], dict(zip(names[1:], args[1:]))).numpy()
    assert_same_showers(got, want, gen.threshold_mev)


def test_eager_generation_and_the_torchscript_graph_are_one_formula_bit_for_bit(current_default, one_thread, tmp_path):
    """Eager generation (row blocks, in place, the map bin by bin), `from_draws` (whole batch, one gather) and the
    traced graph compute one formula (bias inside the matmul, closed-form width bound): the same bits."""
    gen = current_default
    names = input_names(gen)
    script = torch.jit.load(str(export(gen, tmp_path / "g.pt", "torchscript")))
    energies = example_inputs(gen, 700, seed=5)[0]
    with torch.inference_mode():
        eager = gen(energies, torch.Generator().manual_seed(6))
        draws = gen.draw(len(energies), torch.Generator().manual_seed(6))
        plain = gen.from_draws(energies, draws)
        traced = script(energies, *(draws[k] for k in names[1:]))
    assert (eager > 0).float().mean() > 0.1
    assert torch.equal(eager, plain) and torch.equal(traced, eager)


@pytest.mark.slow  # a compilation (~30 s)
def test_torch_compile_gives_the_eager_showers(current_default, one_thread):
    """`compile_generator` (what detsim-generate compile=true runs) draws eager's random numbers and compiles the
    one formula, so for one seed it must give eager's showers to float rounding."""
    gen = current_default
    energies = example_inputs(gen, 300, seed=2)[0]
    with torch.inference_mode():
        want = gen(energies, torch.Generator().manual_seed(4)).numpy()
        got = compile_generator(gen)(energies, torch.Generator().manual_seed(4)).numpy()
    assert_same_showers(got, want, gen.threshold_mev)


@pytest.mark.slow  # two more exports (~10 s each on a busy machine)
def test_sigmoid_head_aggregate_prior_and_affine_map_export_too(tmp_path):
    """The other options: a float64 `member` input for the aggregate prior, no uniforms for the sigmoid head."""
    gen = generator("sigmoid_aggregate_affine")
    path = export(gen, tmp_path / "g.onnx", "onnx")
    names = input_names(gen)
    assert names == ["incident_energy", "normal", "member"]
    args = example_inputs(gen, 300, seed=2)
    (got,) = session(path).run(None, {k: v.numpy() for k, v in zip(names, args)})
    # the affine map's slopes reach 19 in this 3-step model and magnify float32 roundings 19-fold: check
    # the graph with the map at 5e-3 and without it at 1e-4
    with torch.no_grad():
        want = gen.from_draws(args[0], dict(zip(names[1:], args[1:]))).numpy()
    assert float(gen.voxel_map.slope.max()) > 10
    assert np.array_equal(got > 0, want > 0) and np.allclose(got, want, rtol=5e-3, atol=0)
    gen.voxel_map.enabled = False
    (got,) = session(export(gen, tmp_path / "nomap.onnx", "onnx")).run(None, {k: v.numpy() for k, v in zip(names, args)})
    with torch.no_grad():
        want = gen.from_draws(args[0], dict(zip(names[1:], args[1:]))).numpy()
    assert_same_showers(got, want, gen.threshold_mev)


def test_torchscript_graph_runs_any_batch_size(tmp_path):
    gen = generator("default")
    path = export(gen, tmp_path / "g.pt", "torchscript", {"source": "test"})
    files = {"detsim.json": ""}
    module = torch.jit.load(str(path), _extra_files=files)
    assert json.loads(files["detsim.json"])["inputs"] == "incident_energy,normal,uniform"
    names = input_names(gen)
    for n in (3, 250):  # traced at batch 4
        args = example_inputs(gen, n, seed=n)
        with torch.no_grad():
            got = module(*args)
            want = gen.from_draws(args[0], dict(zip(names[1:], args[1:])))
        assert got.shape == (n, 368) and torch.equal(got, want)  # torch's own kernels: bit for bit


def test_bad_format_is_a_one_line_user_error(tmp_path):
    cfg = compose_config("export", [f"ckpt={FIXTURES / 'calo_vae_default.ckpt'}", "format=tflite",
                                    f"out={tmp_path / 'g.tflite'}"])
    from detsim.cli.export import export_model

    with pytest.raises(ConfigError, match="format expected one of .*found 'tflite'"):
        export_model(cfg)
    proc = subprocess.run([sys.executable, "-m", "detsim.cli.export", f"ckpt={tmp_path / 'missing.ckpt'}",
                           f"out={tmp_path / 'g.onnx'}", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "missing.ckpt" in proc.stderr and "Traceback" not in proc.stderr
