"""The fast generation path (row blocks, in-place sampling) draws exactly what the plain path drew.

`reference_generate` is the whole-batch generation as it was before the speed work (decode all rows,
sample with separate hit mask / energy / threshold passes), on the parameters of the one generation formula
(`ShowerDecoder.sampling_params`); the blocked generator must reproduce it bit for bit for a fixed seed on one
thread (same random stream, same roundings). With several threads the matmuls may split their sums
differently per block size, so there the check is rounding-level.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import vae_kwargs

from detsim.models.vae import CaloVAE, WeibullHurdleHead, lower_log_fraction
from detsim.runtime import generator as runtime_generator
from detsim.runtime.generator import apply_threshold, rescale_energy
from detsim.runtime.uniforms import draw_uniforms

THRESHOLD = 0.02


def default_model(*overrides: str, **groups: str) -> CaloVAE:
    """conf/model/calo_vae.yaml on the ds1-photon geometry, with weights that hit ~half the voxels."""
    kwargs = vae_kwargs(f"model.readout_threshold_mev={THRESHOLD}", *overrides, model="calo_vae", **groups)
    torch.manual_seed(0)
    model = CaloVAE(**kwargs).eval()
    with torch.no_grad():  # an untrained net hits ~every voxel near E_inc/V; spread it out, move the prior
        for p in model.generator.decoder.parameters():
            p.mul_(1.5)
        model.generator.prior.loc.normal_(0.0, 0.5)
    return model


def reference_generate(gen, incident_energy: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Generation before the speed work: whole batch, bool hit mask, masked_fill threshold."""
    e_inc = incident_energy.reshape(-1).to(torch.float32)
    c = gen.condition.forward(e_inc)
    out = gen.decoder.sampling_params(gen.prior.sample(c, rng), c)
    head = gen.decoder.head
    lower = lower_log_fraction(gen.threshold_mev, e_inc)
    loc, p, scale = out["loc"], torch.sigmoid(out["hit"]), out["scale"]
    u = draw_uniforms(loc.shape[0], loc.shape[1], rng)  # the generator's stream
    hit = u < p
    v = u.div_(p).clamp_(1e-7, 1.0 - 1e-7)
    if isinstance(head, WeibullHurdleHead):
        g = (-torch.log(v)).add_(((lower - loc) / scale).clamp_(max=50.0).exp_())
        y = torch.addcmul(loc, scale, g.log_())
    else:
        p_lo = torch.special.ndtr((lower - loc) / scale)
        v = torch.lerp(p_lo, torch.ones_like(p_lo), v).clamp_(1e-7, 1.0 - 1e-7)
        y = torch.addcmul(loc, scale, torch.special.ndtri(v))
    frac = y.exp_().mul_(hit)
    if gen.calibration != "none":
        groups = [(0, gen.n_voxels)] if gen.calibration == "total" else gen.layer_bounds
        frac = rescale_energy(frac, head.mean_fraction(out), groups)
    showers = frac.mul_(e_inc.reshape(-1, 1))
    return showers.masked_fill_(showers < gen.threshold_mev, 0.0)


def energies(n: int) -> torch.Tensor:
    return torch.as_tensor(2.0 ** np.random.default_rng(1).integers(8, 23, n), dtype=torch.float32)


@pytest.mark.parametrize("head,calibration", [("hurdle_weibull", "none"), ("hurdle_lognormal", "none"),
                                              ("hurdle_weibull", "layers")])
def test_blocked_generation_equals_the_whole_batch_path_bit_for_bit(monkeypatch, one_thread, head, calibration):
    """Four blocks, the last partial; the fused Weibull path and the generic heads alike."""
    monkeypatch.setattr(runtime_generator, "BLOCK_ROWS", 256)  # a multiple of 256, as BLOCK_ROWS
    gen = default_model(f"model.calibration={calibration}", head=head).generator
    e = energies(1000)
    with torch.inference_mode():
        want = reference_generate(gen, e, torch.Generator().manual_seed(7))
        got = gen(e, torch.Generator().manual_seed(7))
    hit_rate = float((want > 0).float().mean())
    assert 0.2 < hit_rate < 0.9  # a meaningful mix of hits and empty voxels
    assert torch.equal(got, want)
    assert got.min() >= 0 and float(got[got > 0].min()) >= THRESHOLD


def test_generation_with_autograd_on_draws_the_same_numbers(one_thread):
    """Outside inference mode the generator must not write into autograd tensors, yet agree."""
    gen = default_model().generator
    e = energies(700)
    with torch.inference_mode():
        fast = gen(e, torch.Generator().manual_seed(3))
    plain = gen(e, torch.Generator().manual_seed(3))
    assert torch.equal(plain.detach(), fast)


def test_multithreaded_blocks_agree_to_rounding():
    """More threads (one whole-batch block): roundings may move, nothing else may change."""
    assert runtime_generator.BLOCK_ROWS % 256 == 0
    gen = default_model().generator
    e = energies(5000)  # more than one default block
    with torch.inference_mode():
        want = reference_generate(gen, e, torch.Generator().manual_seed(5))
        got = gen(e, torch.Generator().manual_seed(5))
    assert ((got > 0) != (want > 0)).float().mean() < 1e-5
    assert torch.allclose(got, want, rtol=1e-4, atol=0.0)


def test_threshold_cut_keeps_exactly_the_voxels_at_or_above_threshold():
    """The one-pass cut matches `x < threshold -> 0` on the float32 values either side of it."""
    gen = default_model().generator
    t = np.float32(THRESHOLD)
    x = torch.tensor([[0.0, np.nextafter(t, np.float32(0)), t, np.nextafter(t, np.float32(1)), 5.0]])
    want = x.masked_fill(x < THRESHOLD, 0.0)
    assert torch.equal(apply_threshold(x.clone(), gen.threshold_mev), want)
    assert want[0, 2] == t and want[0, 1] == 0  # the boundary itself is kept


def test_blocked_generation_keeps_the_hit_rate_and_mean_energy():
    """Statistical cross-check on 20k showers of one energy: per-voxel hit rate and mean energy."""
    gen = default_model().generator
    e = torch.full((20_000,), 65536.0)
    with torch.inference_mode():
        a = gen(e, torch.Generator().manual_seed(11))
        b = reference_generate(gen, e, torch.Generator().manual_seed(12))  # independent stream
    rate_a, rate_b = (a > 0).float().mean(0), (b > 0).float().mean(0)
    sigma = torch.sqrt(rate_b * (1 - rate_b) / len(e) * 2).clamp_min(1e-3)
    assert ((rate_a - rate_b).abs() / sigma).max() < 5.5
    mean_a, mean_b = a.double().mean(0), b.double().mean(0)
    err = torch.sqrt((a.double().var(0) + b.double().var(0)) / len(e)).clamp_min(1e-9)
    assert ((mean_a - mean_b).abs() / err).max() < 5.5
    assert math.isclose(float(a.sum(1).mean()), float(b.sum(1).mean()), rel_tol=0.01)


@pytest.mark.slow  # two subprocesses that load the model stack (~15 s)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_batch_buffers_are_reused_without_page_faults():
    """generate.heap_buffers_mb: a freed 64 MB buffer (a ds1 decoder output is 44 MB) is reused by the next
    batch instead of being faulted in again page by page (in a subprocess: the setting is process-wide)."""
    script = """
import resource, sys, torch
import detsim.models.vae  # the model stack loaded, as in detsim-generate's process
from detsim.runtime import allocator
ok = allocator.keep_freed_buffers(int(sys.argv[1]))
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = torch.empty(16 << 20).fill_(1.0); del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(), faults()  # the heap grows to its size (two batches, measured)
print(ok, *[faults() for _ in range(5)])
"""

    def run(limit_mb: int) -> tuple[str, list[int]]:
        out = subprocess.run([sys.executable, "-c", script, str(limit_mb)], capture_output=True, text=True, check=True)
        ok, *n = out.stdout.split()
        return ok, [int(x) for x in n]

    ok, n = run(0)
    assert ok == "False" and min(n) > 10_000, n  # libc defaults: its 16k pages are faulted in every time
    ok, n = run(1024)
    # reused; glibc cannot reuse a freed block that a small allocation pins (measured in a bare python with
    # torch alone: every other batch), so the process's heap layout matters: 3 of 5 here
    assert ok == "True" and sum(x < 1000 for x in n) >= 3, n
