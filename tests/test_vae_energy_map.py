"""Energy bookkeeping of generated showers (issue 23): the energy map, the voxel caps and the E_inc bound.

The physics these tests pin: a generated shower's E_tot / E_inc follows the training showers' distribution per
incident-energy bin (resolution and tails, not only the mean), a shower's rank inside its bin is kept (so its
correlation with the shape stays), no voxel ever holds more than its incident energy, and no shower leaves the
training range by more than the configured margin. The last test trains the ds2 recipe for a few steps on real
Geant4 showers (the shared development data) and checks the guarantees on what `detsim-generate` would write.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from detsim.models.vae.energy_map import NoEnergyMap, QuantileEnergyMap, layer_matrix
from detsim.models.vae.voxel_map import QuantileVoxelMap, VoxelCapMap
from detsim.models.vae.voxel_maxima import VoxelMaxima
from detsim.paths import config_dir

from conftest import SHARED_DATA, vae_kwargs

G4_TRAIN = SHARED_DATA / "geant4" / "g4_ds2_e_1_100gev_train.h5"
BOUNDS = [(0, 3), (3, 7)]  # two layers of 3 and 4 voxels


RINGS = [0, 1, 1, 0, 1, 1, 2]  # radial ring of each voxel inside its layer


def energy_map(layers: bool, cap_margin: float = 0.05, n_bins: int = 1) -> QuantileEnergyMap:
    return QuantileEnergyMap(BOUNDS, groups=["rings", "layers"] if layers else [], n_bins=n_bins, n_knots=65,
                             grid=256, margin=0.25, cap_margin=cap_margin, min_showers=20, samples_per_shower=1,
                             reference_showers=10_000, voxel_ring=RINGS)


def showers_from_layers(layer_fractions: np.ndarray, e_inc: float, seed: int) -> torch.Tensor:
    """Voxels (N, 7) MeV whose layer sums are layer_fractions x E_inc, split at random inside each layer."""
    rng = np.random.default_rng(seed)
    parts = []
    for (a, b), frac in zip(BOUNDS, layer_fractions.T):
        w = rng.dirichlet(np.ones(b - a), size=len(frac))
        parts.append(w * frac[:, None] * e_inc)
    return torch.as_tensor(np.concatenate(parts, axis=1), dtype=torch.float32)


def fit(emap: QuantileEnergyMap, ref: torch.Tensor, gen: torch.Tensor, e_inc: float) -> None:
    n_ref, n_gen = len(ref), len(gen)
    emap.fit_showers(torch.full((n_ref, 1), 0.5), emap.group_energies(ref) / e_inc, torch.full((n_gen, 1), 0.5), gen,
                     torch.full((n_gen, 1), e_inc))


@pytest.mark.parametrize("layers", [False, True])
def test_the_map_gives_the_reference_resolution_and_tail_and_keeps_each_showers_rank(layers):
    """Generated totals 4x too wide with a 1 % tail at 30 x E_inc: mapped, the rms and the quantiles are the
    reference's, nothing leaves its range by more than the margin, and the order of the showers is unchanged."""
    rng = np.random.default_rng(0)
    e = 10_000.0

    def wide(n: int) -> np.ndarray:  # the generator's layer fractions: 4x too wide, 1 % at 30x (far above E_inc)
        frac = np.stack([rng.normal(0.3, 0.08, n), rng.normal(0.65, 0.12, n)], axis=1).clip(1e-3)
        frac[: n // 100] *= 30.0
        return frac

    ref_frac = np.stack([rng.normal(0.3, 0.02, 20_000), rng.normal(0.65, 0.03, 20_000)], axis=1)
    ref, gen = showers_from_layers(ref_frac, e, 1), showers_from_layers(wide(20_000), e, 2)
    emap = energy_map(layers)
    fit(emap, ref, gen, e)
    test = showers_from_layers(wide(5000), e, 3)
    mapped = emap.map_showers(test, torch.full((len(test), 1), e), torch.full((len(test), 1), 0.5))
    r_ref, r_test, r_map = ref.sum(1) / e, test.sum(1) / e, mapped.sum(1) / e
    assert r_test.std() > 3 * r_ref.std()  # the input is wrong ...
    assert r_map.std() == pytest.approx(float(r_ref.std()), rel=0.1)  # ... the map's output has the reference's rms
    for q in (0.01, 0.16, 0.5, 0.84, 0.99):
        assert float(r_map.quantile(q)) == pytest.approx(float(r_ref.quantile(q)), abs=0.01)
    assert float(r_map.max()) <= float(r_ref.max()) * math.exp(0.05) + 1e-4  # the tail is gone, structurally
    assert float(mapped.max()) <= e  # no voxel above E_inc
    order = torch.argsort(r_test)
    if not layers:
        assert bool((r_map[order].diff() >= -1e-5).all())  # ranks kept: a monotone map per bin
    else:  # monotone per layer, so the totals' order is kept up to the layers' own reshuffling
        rank = lambda x: torch.argsort(torch.argsort(x)).double()  # noqa: E731
        assert float(torch.corrcoef(torch.stack([rank(r_test), rank(r_map)]))[0, 1]) > 0.9
        # each layer's energy distribution is the reference's too
        got, want = (mapped @ layer_matrix(BOUNDS)) / e, (ref @ layer_matrix(BOUNDS)) / e
        assert got.std(0).numpy() == pytest.approx(want.std(0).numpy(), rel=0.15)


@pytest.mark.parametrize("gen_hit", [0.82, 0.5])
def test_occupancy_matching_gives_the_reference_mean_where_the_occupancy_is_off(gen_hit):
    """Layer 2 is hit in 69 % of the reference showers and in `gen_hit` of the generated ones (the decoder's deep
    layers at 1-3 GeV: 82 %). Hits mapped onto hits keep the wrong occupancy and miss the layer's mean energy;
    with match_occupancy the generated layer has the reference's occupancy and mean (its unconditional distribution)."""
    rng = np.random.default_rng(7)
    e, n = 2000.0, 20_000

    def layer_fractions(hit: float, mean: float) -> np.ndarray:
        frac = np.stack([np.full(n, 0.9), np.exp(rng.normal(np.log(mean), 0.5, n))], axis=1)
        frac[:, 1] *= rng.random(n) < hit
        return frac

    ref = showers_from_layers(layer_fractions(0.69, 0.01), e, 8)
    gen = showers_from_layers(layer_fractions(gen_hit, 0.008), e, 9)
    layer2 = lambda s: (s @ layer_matrix(BOUNDS))[:, 1] / e  # noqa: E731
    results = {}
    for match in (False, True):
        emap = QuantileEnergyMap(BOUNDS, groups=["layers"], n_bins=1, n_knots=65, grid=256, margin=0.25,
                                 cap_margin=0.05, min_showers=20, samples_per_shower=1, reference_showers=n,
                                 voxel_ring=RINGS, match_occupancy=match)
        fit(emap, ref, gen, e)
        mapped = emap.map_showers(gen.clone(), torch.full((n, 1), e), torch.full((n, 1), 0.5))
        results[match] = (float((layer2(mapped) > 0).float().mean()), float(layer2(mapped).mean()))
    want = (float((layer2(ref) > 0).float().mean()), float(layer2(ref).mean()))
    assert results[False][0] == pytest.approx(gen_hit, abs=0.02)  # hits onto hits: the occupancy stays wrong ...
    assert abs(results[False][1] / want[1] - 1) > 0.15  # ... and so does the layer's mean energy
    assert results[True][0] == pytest.approx(want[0], abs=0.02 if gen_hit > want[0] else 1.0)  # a hit is never made
    assert results[True][1] == pytest.approx(want[1], rel=0.05 if gen_hit > want[0] else 0.15)


def test_the_map_leaves_the_shape_inside_a_cell():
    """Voxels of a (layer, ring) cell are scaled by one factor: their fractions of the cell's energy are the decoder's."""
    rng = np.random.default_rng(4)
    e = 5000.0
    ref = showers_from_layers(np.abs(rng.normal([0.3, 0.6], 0.02, (5000, 2))), e, 5)
    gen = showers_from_layers(np.abs(rng.normal([0.35, 0.5], 0.06, (5000, 2))), e, 6)
    emap = energy_map(True)
    fit(emap, ref, gen, e)
    mapped = emap.map_showers(gen[:100], torch.full((100, 1), e), torch.full((100, 1), 0.5))
    for cell in ([1, 2], [4, 5]):  # the two cells of more than one voxel
        before = gen[:100, cell] / gen[:100, cell].sum(1, keepdim=True)
        after = mapped[:, cell] / mapped[:, cell].sum(1, keepdim=True)
        assert torch.allclose(before, after, atol=1e-5)


@pytest.mark.parametrize("spill", ["hits", "cell"])
def test_spilled_excess_stays_in_its_cell_and_below_every_cap(spill):
    """A voxel above its cap gives the excess to its own (layer, ring) cell: the cell keeps its energy when it has
    room, no voxel passes its cap, no other cell changes; "hits" makes no new hit, "cell" may; "none" cuts."""
    # voxels 1, 2 are one cell (layer 0, ring 1); 4, 5 another (layer 1, ring 1)
    showers = torch.tensor([[1.0, 9.0, 1.0, 2.0, 6.0, 0.0, 1.0],    # 1: 9 over a cap of 5, its cell-mate has room
                            [1.0, 9.0, 0.0, 2.0, 1.0, 1.0, 1.0],    # 2: 9 over 5, the cell-mate empty
                            [1.0, 20.0, 2.0, 2.0, 1.0, 1.0, 1.0]])  # 3: more excess than the cell has room for
    caps = torch.full_like(showers, 5.0)
    emap = energy_map(True)
    emap.spill = spill
    out = emap.bound_voxels(showers, caps)
    assert bool((out <= caps + 1e-6).all())
    cell = [1, 2]
    assert torch.allclose(out[:, [0, 3, 6]], showers[:, [0, 3, 6]].clamp(max=5.0))  # one-voxel cells: cut only
    assert out[0, cell].sum() == pytest.approx(10.0)  # 4 moved to voxel 2, which had room for 4
    assert out[0, [4, 5]].sum() == pytest.approx(5.0 + (1.0 if spill == "cell" else 0.0))  # voxel 4's excess of 1
    assert out[2, cell].sum() == pytest.approx(10.0)  # room for 3 more only: both voxels at the cap
    if spill == "hits":
        assert float(out[1, 2]) == 0.0 and out[1, cell].sum() == pytest.approx(5.0)
        assert bool(((out > 0) == (showers > 0)).all())
    else:
        assert out[1, cell].sum() == pytest.approx(9.0)
    emap.spill = "none"
    assert torch.equal(emap.bound_voxels(showers, caps), showers.clamp(max=5.0))


def test_an_unfitted_or_absent_map_changes_nothing():
    showers = torch.rand(5, 7)
    assert not NoEnergyMap(BOUNDS).active and "fitted" not in NoEnergyMap(BOUNDS).state_dict()
    emap = energy_map(True)
    assert not emap.active  # generation skips it until training has fitted it


def test_voxel_caps_bound_mapped_and_unmapped_voxels():
    """Voxel 0: many hits (mapped); voxel 1: two hits (too few to map: identity up to its cap); voxel 2: never hit
    in the reference (capped at the bin's smallest cap). Nothing maps above its cap, however hot the input."""
    rng = np.random.default_rng(1)
    n = 4000
    ref = torch.zeros(n, 3, dtype=torch.float64)
    ref[:, 0] = torch.as_tensor(np.exp(rng.normal(-3.0, 0.3, n)))
    ref[:2, 1] = torch.tensor([0.01, 0.02])
    gen = torch.as_tensor(np.exp(rng.normal(-3.0, 0.6, (n, 3))))
    vmap = QuantileVoxelMap(3, n_bins=1, n_knots=65, grid=64, margin=0.25, min_hits=50, samples_per_shower=1,
                            reference_showers=n, cap_margin=0.5)
    vmap.fit(torch.full((n,), 0.5), ref, torch.full((n,), 0.5), gen)
    hot = torch.full((3, 3), 3.0)  # log fraction 3: 20 x E_inc
    mapped = vmap.map_log(hot.clone(), torch.zeros(3, dtype=torch.long))[0]
    assert float(mapped[0]) <= float(torch.log(ref[:, 0]).max()) + 0.5 + 1e-4
    assert float(mapped[1]) == pytest.approx(math.log(0.02) + 0.5, abs=2e-3)  # the grid ends 1e-3 of a step short
    assert float(mapped[2]) <= float(mapped[1]) + 1e-4
    inside = torch.tensor([[-3.0, math.log(0.015), -20.0]])  # below the caps, unmapped voxels are left alone
    out = vmap.map_log(inside.clone(), torch.zeros(1, dtype=torch.long))[0]
    assert float(out[1]) == pytest.approx(math.log(0.015), abs=1e-4)
    assert float(out[2]) == pytest.approx(-20.0, abs=1e-4)
    # the cap-only map (the ds2 default): no voxel is mapped, every one is capped
    caps = VoxelCapMap(3, n_bins=1, grid=64, cap_margin=0.5, samples_per_shower=1, reference_showers=n)
    caps.fit(torch.full((n,), 0.5), ref, torch.full((n,), 0.5), gen)
    assert float(caps.map_log(inside.clone(), torch.zeros(1, dtype=torch.long))[0, 0]) == pytest.approx(-3.0, abs=1e-4)
    top = caps.map_log(hot.clone(), torch.zeros(3, dtype=torch.long))[0]
    assert float(top[0]) == pytest.approx(float(torch.log(ref[:, 0]).max()) + 0.5, abs=2e-3)


def test_caps_from_running_training_maxima_equal_caps_from_the_stored_showers():
    """The training-reference caps (running maxima, batch by batch, no shower kept) are the caps a fit to all the
    showers at once gives, per bin; showers past `limit` do not count; a rare large hit sets its voxel's cap."""
    rng = np.random.default_rng(2)
    n, n_vox = 3000, 4
    x = torch.as_tensor(np.exp(rng.normal(-4.0, 0.5, (n, n_vox))) * (rng.random((n, n_vox)) < 0.7))
    x[17, 3] = 0.3  # one rare large hit in the outer voxel
    c = torch.as_tensor(rng.random(n)).reshape(-1, 1)
    maxima = VoxelMaxima(n_bins=2, n_voxels=n_vox, limit=n)
    for start in range(0, n, 256):
        maxima.update(c[start : start + 256], x[start : start + 256])
    maxima.update(c, x * 100)  # past the limit: ignored
    assert maxima.full and maxima.seen == n
    running = VoxelCapMap(n_vox, n_bins=2, grid=64, cap_margin=0.25, samples_per_shower=1, reference_showers=n,
                          reference="training")
    running.fit_maxima(maxima.top)
    stored = VoxelCapMap(n_vox, n_bins=2, grid=64, cap_margin=0.25, samples_per_shower=1, reference_showers=n)
    stored.fit(c.reshape(-1), x, c.reshape(-1), x)
    assert torch.allclose(running.table, stored.table, atol=1e-5)
    b17 = int(c[17, 0] >= 0.5)
    assert float(running.table[b17, 3, -1]) == pytest.approx(math.log(0.3) + 0.25, abs=1e-5)
    with pytest.raises(Exception, match="reference"):
        VoxelCapMap(n_vox, n_bins=2, grid=64, cap_margin=0.25, samples_per_shower=1, reference_showers=n,
                    reference="test")


@pytest.mark.parametrize("seed", range(3))
def test_no_generated_voxel_holds_more_than_its_incident_energy(seed):
    """Property: a decoder pushed to hot voxels (no voxel map) still writes none above E_inc, at any energy."""
    from detsim.models.vae import CaloVAE

    model = CaloVAE(**vae_kwargs("model.latent_dim=4", "model.readout_threshold_mev=0.02", head="hurdle_weibull"))
    head = model.generator.decoder.head
    n_vox = model.generator.n_voxels
    with torch.no_grad():  # hit probability ~1, E_voxel / E_inc ~ e^2 and wide: most voxels "want" 7 x E_inc
        head.linear.bias[:n_vox].fill_(8.0)
        head.linear.bias[n_vox : 2 * n_vox].fill_(2.0)
        head.linear.bias[2 * n_vox :].fill_(0.5)
    g = torch.Generator().manual_seed(seed)
    e = torch.exp(torch.empty(500).uniform_(math.log(256.0), math.log(4.2e6), generator=g))
    with torch.inference_mode():
        showers = model.generator(e, torch.Generator().manual_seed(seed))
    assert float((showers / e[:, None]).max()) <= 1.0 + 1e-6
    assert float((showers / e[:, None]).max()) > 0.5  # the bound is what stopped them


@pytest.fixture(scope="module")
def trained_on_geant4(tmp_path_factory):
    """The ds2 recipe, a few steps on 900 real Geant4 showers (shared development data), maps fitted."""
    if not G4_TRAIN.is_file():
        pytest.skip(f"Geant4 development data not found at {G4_TRAIN} (set DETSIM_SHARED_DATA)")
    from detsim.cli.train import train

    tmp = tmp_path_factory.mktemp("g4energy")
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[
            "experiment=calo_vae_ds2", f"data.path={G4_TRAIN}", "data.max_showers=900", "data.batch_size=64",
            "trainer.max_epochs=2", "trainer.accelerator=cpu", "model.encoder.hidden=[64,32]", "model.latent_dim=4",
            "model.energy_map.n_bins=3",
            "model.energy_map.min_showers=20", "callbacks.validation_plots=null", "callbacks.fidelity.max_showers=90",
            "callbacks.progress_bar=null", "logger.log_model=false", f"logger.tracking_uri=sqlite:///{tmp}/mlflow.db",
            "run_test=false", f"paths.output_dir={tmp}/out"])
    train(cfg)
    return next((tmp / "out" / "checkpoints").glob("last*.ckpt"))


def test_a_few_steps_on_geant4_keep_the_structural_guarantees(trained_on_geant4):
    """E_tot / E_inc within the training range (+ the cap margin), no voxel above E_inc, at energies across the range."""
    from detsim.generate import load_generator
    from detsim.io import read_showers

    gen = load_generator(trained_on_geant4).module
    assert gen.energy_map.active and gen.voxel_map.active
    kept = [state for name, state in torch.load(trained_on_geant4, weights_only=False)["callbacks"].items()
            if "val/fidelity" in name]  # the recipe keeps the checkpoint with the most faithful showers
    assert kept and math.isfinite(float(kept[0]["best_model_score"]))
    train = read_showers(G4_TRAIN, stop=900)
    ratio = train.showers.sum(1) / train.incident_energy
    e = torch.exp(torch.empty(3000).uniform_(math.log(gen.condition.e_min_mev), math.log(gen.condition.e_max_mev),
                                             generator=torch.Generator().manual_seed(0)))
    with torch.inference_mode():
        showers = gen(e, torch.Generator().manual_seed(1))
    r = showers.sum(1) / e
    assert float((showers / e[:, None]).max()) <= 1.0
    # the caps come from the training showers (running maxima): no voxel above the largest training voxel x e^margin
    assert gen.voxel_map.reference == "training"
    largest = float((train.showers / train.incident_energy[:, None]).max())
    assert float((showers / e[:, None]).max()) <= largest * math.exp(gen.voxel_map.cap_margin) * 1.001
    assert float(r.max()) <= ratio.max() * math.exp(gen.energy_map.total_map.cap_margin) * 1.001
    assert float(((r < ratio.min()) | (r > ratio.max())).float().mean()) < 0.01
    assert np.median(r.numpy()) == pytest.approx(np.median(ratio), rel=0.03)


@pytest.mark.parametrize("spill", ["none", "cell"])
def test_exported_graphs_carry_the_energy_map(trained_on_geant4, tmp_path, spill):
    """TorchScript and ONNX Runtime give the showers `from_draws` gives, energy map (and its spill) included."""
    import onnxruntime as ort

    from detsim.generate import load_generator
    from detsim.runtime.export import example_inputs, export, input_names

    gen = load_generator(trained_on_geant4).module
    gen.energy_map.spill = spill
    names = input_names(gen)
    args = example_inputs(gen, 200, seed=3)
    with torch.no_grad():
        want = gen.from_draws(args[0], dict(zip(names[1:], args[1:])))
        gen.energy_map.enabled = False
        without = gen.from_draws(args[0], dict(zip(names[1:], args[1:])))
        gen.energy_map.enabled = True
    assert (want.sum(1) - without.sum(1)).abs().max() > 1e-3 * want.sum(1).mean()  # the map does something
    onnx_path = export(gen, tmp_path / "g.onnx", "onnx")
    (got,) = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {k: v.numpy() for k, v in zip(names, args)})
    rel = np.abs(got.sum(1) - want.numpy().sum(1)) / want.numpy().sum(1)
    assert rel.max() < 1e-4 and float(got.max()) <= float(args[0].max())
    script = torch.jit.load(str(export(gen, tmp_path / "g.pt", "torchscript")))
    with torch.no_grad():
        traced = script(*args)
    assert torch.allclose(traced.sum(1), want.sum(1), rtol=1e-4)


def test_each_map_is_fitted_to_the_showers_before_it():
    """The voxel map is fitted to the decoder's own showers (both maps off) and the energy map to the voxel-mapped
    ones (energy map off): with the previous epoch's energy map on, each map chased the other's output and E_tot
    before the energy map drifted to 1.3-2.3 x E_inc over 41 epochs."""
    from detsim.models.vae import CaloVAE

    model = CaloVAE(**vae_kwargs("model.latent_dim=4", "model.readout_threshold_mev=0.02", head="hurdle_weibull",
                                 voxel_map="cap"))
    gen = model.generator
    seen = []
    forward = type(gen).forward

    def spy(self, *args, **kwargs):
        seen.append((self.voxel_map.enabled, self.energy_map.enabled))
        return forward(self, *args, **kwargs)

    model.generator.energy_map = energy_map_for(model)
    type(gen).forward = spy
    try:
        e = torch.full((60,), 4096.0)
        showers = torch.rand(60, gen.n_voxels) * 10
        model.fit_voxel_map(e, showers)
        model.fit_energy_map(e, model.generator.energy_map.group_energies(showers))
    finally:
        type(gen).forward = forward
    assert seen == [(False, False), (True, False)]


def energy_map_for(model) -> QuantileEnergyMap:
    bounds = [(s.start, s.stop) for s in model.layer_slices]
    return QuantileEnergyMap(bounds, groups=["layers"], n_bins=1, n_knots=9, grid=16, margin=0.25, cap_margin=0.05,
                             min_showers=5, samples_per_shower=1, reference_showers=100)
