"""Geometries: every YAML config equals the challenge's public binning file; index maps are consistent."""

from __future__ import annotations

import numpy as np
import pytest

from detsim.errors import ConfigError, DataFileError
from detsim.geometry import Geometry, load_geometry
from conftest import CONF

XML_FOR_YAML = {
    "calochallenge_ds1_photons": ("binning_dataset_1_photons.xml", 368),
    "calochallenge_ds1_pions": ("binning_dataset_1_pions.xml", 533),
    "calochallenge_ds2": ("binning_dataset_2.xml", 6480),
    "calochallenge_ds3": ("binning_dataset_3.xml", 40500),
}


def yaml_geometry(name: str) -> Geometry:
    return load_geometry(CONF / "geometry" / f"{name}.yaml")


@pytest.mark.parametrize("name", sorted(XML_FOR_YAML))
def test_yaml_matches_public_xml(name: str, calochallenge_dir) -> None:
    xml_name, n_voxels = XML_FOR_YAML[name]
    from_xml = Geometry.from_xml(calochallenge_dir / xml_name)
    from_yaml = yaml_geometry(name)
    assert from_yaml.n_voxels == from_xml.n_voxels == n_voxels
    assert from_yaml.layer_ids == from_xml.layer_ids
    for a, b in zip(from_yaml.layers, from_xml.layers):
        assert a.n_alpha == b.n_alpha
        np.testing.assert_allclose(a.r_edges, b.r_edges)


def test_ds1_photon_layer_ids_are_not_contiguous() -> None:
    geo = yaml_geometry("calochallenge_ds1_photons")
    assert geo.layer_ids == [0, 1, 2, 3, 12]
    assert [s.stop - s.start for s in geo.layer_slices] == [8, 160, 190, 5, 5]


def test_calogan_geometry_has_504_cells_in_layer_order() -> None:
    geo = yaml_geometry("calogan")
    assert geo.kind == "grid" and geo.n_voxels == 504
    assert [layer.shape for layer in geo.layers] == [(3, 96), (12, 12), (12, 6)]
    x, y = geo.cell_centres_xy
    # every layer spans the same 480 mm x 480 mm face, centred on the axis
    for sl in geo.layer_slices:
        assert abs(x[sl].mean()) < 1e-9 and abs(y[sl].mean()) < 1e-9
    assert x[geo.layer_slice(0)].max() == pytest.approx(240 - 2.5)


def test_voxel_order_radial_fastest_then_alpha_then_layer() -> None:
    geo = yaml_geometry("calochallenge_ds2")
    assert geo.is_uniform
    showers = np.arange(2 * geo.n_voxels).reshape(2, -1)
    cells = showers.reshape(2, 45, 16, 9)
    layer_pos, (a_idx, r_idx) = geo.voxel_layer_position, geo.voxel_cell_index
    v = geo.voxel_index(7, 3, 5)
    assert (layer_pos[v], a_idx[v], r_idx[v]) == (7, 3, 5)
    assert cells[1, 7, 3, 5] == showers[1, v]


def test_alpha_bin_zero_starts_at_minus_pi_and_centres_match_cells() -> None:
    geo = yaml_geometry("calochallenge_ds2")
    r, alpha = geo.cell_centres_polar
    x, y = geo.cell_centres_xy
    v = geo.voxel_index(0, 0, 0)
    assert alpha[v] == pytest.approx(-np.pi + np.pi / 16)
    assert r[v] == pytest.approx(4.65 / 2)
    np.testing.assert_allclose(np.arctan2(y, x), alpha, atol=1e-12)
    np.testing.assert_allclose(np.hypot(x, y), r, atol=1e-12)


def test_cell_areas_sum_to_disc_area_per_layer() -> None:
    geo = yaml_geometry("calochallenge_ds1_photons")
    for layer, sl in zip(geo.layers, geo.layer_slices):
        assert geo.cell_areas[sl].sum() == pytest.approx(np.pi * layer.r_edges[-1] ** 2)


def test_layer_energies_sum_each_layer() -> None:
    geo = yaml_geometry("calochallenge_ds1_photons")
    showers = np.zeros((1, geo.n_voxels))
    showers[0, geo.layer_slice(2)] = 1.0
    showers[0, geo.layer_slice(4).start] = 5.0
    np.testing.assert_allclose(geo.layer_energies(showers), [[0, 0, 190, 0, 5]])


def test_user_xml_and_errors(tmp_path) -> None:
    xml = tmp_path / "mine.xml"
    xml.write_text('<Bins><Bin name="e"><Layer id="0" r_edges="0,1,3" n_bin_alpha="4"/>'
                   '<Layer id="5" r_edges="0" n_bin_alpha="1"/><Layer id="7" r_edges="0,2" n_bin_alpha="1"/></Bin></Bins>')
    geo = Geometry.from_xml(xml)
    assert geo.layer_ids == [0, 7] and geo.n_voxels == 9
    with pytest.raises(DataFileError, match="no such file"):
        Geometry.from_xml(tmp_path / "absent.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<Bins><Bin>")
    with pytest.raises(DataFileError, match="XML"):
        Geometry.from_xml(bad)
    with pytest.raises(ConfigError):
        Geometry.from_config({"name": "x", "layers": [{"id": 0, "r_edges": [0, 2, 1]}]})
