"""G2Net layout reader and packed cache, on small layouts written in tmp_path."""

from __future__ import annotations

import numpy as np
import pytest

from detsim.errors import DataFileError
from detsim.gw.io import pack_cache, read_cache, read_labels, read_sample, sample_path, write_labels, write_sample


def _layout(root, n=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"{i:03x}abc{i}" for i in range(n)]
    data = rng.normal(scale=1e-21, size=(n, 3, 4096))
    for sample_id, strain in zip(ids, data):
        write_sample(root, sample_id, strain)
    write_labels(root, ids, [i % 2 for i in range(n)])
    return ids, data


def test_layout_paths_and_round_trip(tmp_path):
    ids, data = _layout(tmp_path)
    assert sample_path(tmp_path, ids[1]) == tmp_path / "train" / "0" / "0" / "1" / f"{ids[1]}.npy"
    got_ids, targets = read_labels(tmp_path)
    assert list(got_ids) == ids and list(targets) == [0, 1, 0, 1, 0]
    np.testing.assert_array_equal(read_sample(sample_path(tmp_path, ids[2])), data[2])


def test_cache_holds_float32_strain_in_label_order(tmp_path):
    ids, data = _layout(tmp_path)
    (tmp_path / "side.csv").write_text("id,snr_network\n" + "".join(f"{i},{k}.5\n" for k, i in enumerate(ids)))
    arrays = read_cache(pack_cache(tmp_path, tmp_path / "c.h5", side_csv=tmp_path / "side.csv", chunk=2, progress=False))
    assert arrays.strain.dtype == np.float32 and arrays.strain.shape == (5, 3, 4096)
    np.testing.assert_allclose(arrays.strain, data, rtol=1e-6)
    assert list(arrays.ids) == ids and list(arrays.snr) == [0.5, 1.5, 2.5, 3.5, 4.5]


@pytest.mark.parametrize("defect", ["shape", "nan", "missing"])
def test_bad_sample_names_the_file(tmp_path, defect):
    ids, _ = _layout(tmp_path)
    bad = sample_path(tmp_path, ids[3])
    if defect == "shape":
        np.save(bad, np.zeros((2, 4096)))
    elif defect == "nan":
        arr = np.zeros((3, 4096))
        arr[1, 7] = np.nan
        np.save(bad, arr)
    else:
        bad.unlink()
    with pytest.raises(DataFileError, match=ids[3]) as info:
        pack_cache(tmp_path, tmp_path / "c.h5", progress=False)
    assert info.value.path == str(bad)
    assert not (tmp_path / "c.h5").exists()
    assert not list(tmp_path.glob("*partial*")) and not list(tmp_path.glob(".*partial*"))  # no temporary cache left


def test_bad_labels_file(tmp_path):
    with pytest.raises(DataFileError, match="training_labels.csv"):
        read_labels(tmp_path)
    (tmp_path / "training_labels.csv").write_text("id,label\nabc,1\n")
    with pytest.raises(DataFileError, match="id,target"):
        read_labels(tmp_path)
    (tmp_path / "training_labels.csv").write_text("id,target\nabcd,2\n")
    with pytest.raises(DataFileError, match="0 or 1"):
        read_labels(tmp_path)
