"""High-level features on hand-made showers whose centre and width are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from detsim.eval.features import ShowerFeatures, high_level_inputs, low_level_inputs
from detsim.geometry import load_geometry
from detsim.paths import config_dir
from detsim.showers import CaloShowers


def geometry(name: str):
    return load_geometry(config_dir() / "geometry" / f"{name}.yaml")


def one_shower(g, cells: dict[tuple[int, int, int], float], e_inc: float = 1000.0) -> CaloShowers:
    s = np.zeros((1, g.n_voxels), dtype=np.float32)
    for (layer_id, first, second), energy in cells.items():
        s[0, g.voxel_index(layer_id, first, second)] = energy
    return CaloShowers(np.array([e_inc]), s)


def radial_centre(g, layer_id: int, a_bin: int, r_bin: int) -> tuple[float, float]:
    layer = g.layers[g.layer_position(layer_id)]
    edges = np.asarray(layer.r_edges)
    r = 0.5 * (edges[r_bin] + edges[r_bin + 1])
    alpha = -np.pi + (a_bin + 0.5) * 2 * np.pi / layer.n_alpha
    return r * np.cos(alpha), r * np.sin(alpha)


def test_single_cell_sets_centre_and_zero_width():
    g = geometry("calochallenge_ds1_photons")
    f = ShowerFeatures(g)(one_shower(g, {(2, 3, 5): 50.0}))
    x, y = radial_centre(g, 2, 3, 5)
    assert f["centre_x_2"][0] == pytest.approx(x, abs=1e-9)
    assert f["centre_y_2"][0] == pytest.approx(y, abs=1e-9)
    assert f["width_x_2"][0] == pytest.approx(0.0, abs=1e-6)
    assert f["e_layer_2"][0] == pytest.approx(50.0)
    assert f["etot_einc"][0] == pytest.approx(0.05)


def test_two_opposite_cells_have_centre_zero_and_known_width():
    g = geometry("calochallenge_ds1_photons")
    # alpha bins 2 and 7 of 10 are opposite; equal energies put the centre on the axis and
    # the standard deviation in x at |x| of either cell.
    f = ShowerFeatures(g)(one_shower(g, {(1, 2, 9): 10.0, (1, 7, 9): 10.0}))
    x, y = radial_centre(g, 1, 2, 9)
    assert f["centre_x_1"][0] == pytest.approx(0.0, abs=1e-9)
    assert f["centre_y_1"][0] == pytest.approx(0.0, abs=1e-9)
    assert f["width_x_1"][0] == pytest.approx(abs(x), rel=1e-9)
    assert f["width_y_1"][0] == pytest.approx(abs(y), rel=1e-9)


def test_weighted_centre_on_a_grid_layer():
    g = geometry("calogan")
    # layer 1: 12 x 12 cells of 40 mm; columns 5 and 6 sit at x = -20 and +20 mm.
    f = ShowerFeatures(g)(one_shower(g, {(1, 6, 5): 30.0, (1, 6, 6): 10.0}))
    mean = (-20 * 30 + 20 * 10) / 40
    assert f["centre_x_1"][0] == pytest.approx(mean)
    assert f["width_x_1"][0] == pytest.approx(np.sqrt((400 * 40) / 40 - mean**2))
    assert f["centre_y_1"][0] == pytest.approx(20.0)  # row 6 of 12 rows of 40 mm
    assert f["sparsity_1"][0] == pytest.approx(1 - 2 / 144)


def test_single_alpha_layers_have_no_xy_features_and_empty_layers_stay_finite():
    g = geometry("calochallenge_ds1_photons")
    feats = ShowerFeatures(g)
    xy = [n for n in feats.names if n.startswith(("centre_x", "centre_y", "width_x", "width_y"))]
    assert not any(n.endswith(f"_{i}") for n in xy for i in (0, 3, 12))
    assert all(f"{k}_r_{i}" in feats.names for k in ("centre", "width") for i in (0, 1, 2, 3, 12))
    f = feats(one_shower(g, {(0, 0, 1): 5.0}))
    assert all(np.isfinite(v).all() for v in f.values())
    assert f["centre_x_1"][0] == 0.0 and f["width_y_2"][0] == 0.0
    assert f["sparsity_0"][0] == pytest.approx(1 - 1 / 8)


def literal_features(g, e: np.ndarray) -> dict[str, float]:
    """The challenge's formulas written out per layer for one shower, as an independent check."""
    out = {}
    for layer in g.layers:
        sl = g.layer_slice(g.layer_position(layer.id))
        cells = e[sl].astype(np.float64)
        out[f"e_layer_{layer.id}"] = cells.sum()
        r, alpha = layer.cell_centres_polar()
        r_mean = (r * cells).sum() / (cells.sum() + 1e-16)
        out[f"centre_r_{layer.id}"] = r_mean
        out[f"width_r_{layer.id}"] = np.sqrt(max((r**2 * cells).sum() / (cells.sum() + 1e-16) - r_mean**2, 0.0))
        if getattr(layer, "n_alpha", 2) > 1:
            for axis, pos in (("x", r * np.cos(alpha)), ("y", r * np.sin(alpha))):
                mean = (pos * cells).sum() / (cells.sum() + 1e-16)
                second = (pos**2 * cells).sum() / (cells.sum() + 1e-16)
                out[f"centre_{axis}_{layer.id}"] = mean
                out[f"width_{axis}_{layer.id}"] = np.sqrt(max(second - mean**2, 0.0))
    return out


@pytest.mark.parametrize("name", ["calochallenge_ds1_pions", "calochallenge_ds2"])
def test_vectorised_features_match_the_literal_formulas(name):
    g = geometry(name)
    rng = np.random.default_rng(3)
    e = (rng.exponential(1.0, (4, g.n_voxels)) * (rng.random((4, g.n_voxels)) < 0.3)).astype(np.float32)
    f = ShowerFeatures(g)(CaloShowers(np.full(4, 5000.0), e))
    for i in range(4):
        for key, value in literal_features(g, e[i]).items():
            assert f[key][i] == pytest.approx(value, rel=1e-6, abs=1e-6), key


def test_classifier_inputs_have_the_challenge_scaling():
    g = geometry("calochallenge_ds1_photons")
    s = one_shower(g, {(2, 3, 5): 50.0, (1, 0, 0): 30.0}, e_inc=1000.0)
    low = low_level_inputs(s, voxel_scale=1.0)
    assert low.shape == (1, g.n_voxels + 1)
    assert low[0, 0] == pytest.approx(3.0) and low[0, 1 + g.voxel_index(2, 3, 5)] == pytest.approx(0.05)
    high = high_level_inputs(s, ShowerFeatures(g))
    # the challenge's inputs: log10 E_inc, 5 x log10 E_layer, log10 E_tot, 5 sparsities,
    # x/y centres and widths of the 2 layers binned in alpha, r centre and width of all 5 layers
    assert high.shape == (1, 1 + 5 + 1 + 5 + 4 * 2 + 2 * 5)
    assert high[0, 3] == pytest.approx(np.log10(50.0), rel=1e-6)
    assert high[0, 6] == pytest.approx(np.log10(80.0), rel=1e-6)
    assert high[0, 8] == pytest.approx(1 - 1 / 160)  # sparsity of layer 1: one hit cell of 10 x 16
    r_1 = 0.5 * (0 + 2)  # innermost radial bin of layer 1, in mm
    r_2 = 0.5 * (20 + 25)  # radial bin 5 of layer 2
    names = [n for n in ShowerFeatures(g).names if n.startswith(("centre", "width"))]
    assert high[0, 12 + names.index("centre_r_1")] == pytest.approx(r_1 / 100, rel=1e-6)
    assert high[0, 12 + names.index("centre_r_2")] == pytest.approx(r_2 / 100, rel=1e-6)
    assert high[0, 12 + names.index("width_r_2")] == pytest.approx(0.0, abs=1e-6)
