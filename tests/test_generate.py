"""detsim.generate and detsim-generate: checkpoints in, valid shower files out, reproducible per seed."""

from __future__ import annotations

import h5py
import lightning.pytorch as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import partial_output_kept, write_photon_sample
from detsim.cli.generate import generate
from detsim.errors import ConfigError, DataFileError
from detsim.generate import generate_to_file, incident_energies, load_generator
from detsim.io import read_showers
from detsim.config import model_kwargs
from detsim.models.vae import CaloVAE
from detsim.paths import config_dir

N_VOXELS = 368


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return write_photon_sample(tmp_path_factory, n=256, seed=2)


@pytest.fixture(scope="module")
def checkpoint(reference, tmp_path_factory):
    """The default model config after a few real Lightning steps, saved as a checkpoint."""
    model = CaloVAE(**model_kwargs(["model=calo_vae", "model.readout_threshold_mev=0.02"]))
    showers = read_showers(reference)
    batches = [{"incident_energy": torch.as_tensor(showers.incident_energy[i : i + 64]),
                "showers": torch.as_tensor(showers.showers[i : i + 64])} for i in range(0, 256, 64)]
    batches = torch.utils.data.DataLoader(batches, batch_size=None)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=tmp_path_factory.mktemp("fit"))
    trainer.fit(model, batches, batches)
    path = tmp_path_factory.mktemp("ckpt") / "vae.ckpt"
    trainer.save_checkpoint(path)
    return path


def _run_cli(overrides: list[str]) -> str:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return generate(compose("generate", overrides=[*overrides, "progress=false"]))


def test_cli_writes_a_valid_file_with_the_reference_energies(checkpoint, reference, tmp_path):
    out = tmp_path / "generated.h5"
    _run_cli([f"ckpt={checkpoint}", "n=null", "seed=1", f"out={out}", f"reference={reference}", "batch_size=100"])
    gen, ref = read_showers(out, n_voxels=N_VOXELS), read_showers(reference)
    assert len(gen) == len(ref)
    np.testing.assert_array_equal(gen.incident_energy, ref.incident_energy)
    assert gen.showers.min() >= 0
    assert not np.any((gen.showers > 0) & (gen.showers < 0.02))  # the training data's readout threshold
    with h5py.File(out) as handle:
        assert handle["showers"].dtype == np.float64 and handle["incident_energies"].shape == (len(ref), 1)
        assert "mlflow_run_id" not in handle.attrs  # this checkpoint was not tracked


def test_same_seed_same_file_other_seed_other_showers(checkpoint, tmp_path):
    loaded = load_generator(checkpoint)
    energies = incident_energies(500, energies=[256.0, 4096.0, 65536.0])
    paths = [generate_to_file(loaded, energies, tmp_path / f"{name}.h5", batch_size=128, seed=seed, progress=False)
             for name, seed in (("a", 7), ("b", 7), ("c", 8))]
    a, b, c = (read_showers(p).showers for p in paths)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # the batch size does not change the showers' distribution, only the random stream
    assert abs(a.sum(1).mean() - c.sum(1).mean()) < 0.2 * a.sum(1).mean()


def test_root_output_and_spectrum_energies(checkpoint, tmp_path):
    out = tmp_path / "generated.root"
    _run_cli([f"ckpt={checkpoint}", "n=200", "seed=3", f"out={out}", "spectrum=ds1_discrete"])
    gen = read_showers(out, n_voxels=N_VOXELS)
    assert len(gen) == 200
    assert set(np.log2(gen.incident_energy).round().astype(int)) <= set(range(8, 23))


def test_user_errors_name_what_is_wrong(checkpoint, tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_generator(tmp_path / "missing.ckpt")
    with pytest.raises(DataFileError, match="a .ckpt file, an MLflow run id"):
        load_generator("not-a-model")
    with pytest.raises(ConfigError, match="exactly one of"):
        incident_energies(10)
    with pytest.raises(ConfigError, match="positive"):
        incident_energies(10, energies=[-5.0])


def test_compile_auto_only_for_large_jobs():
    from detsim.generate import use_compile

    assert use_compile("auto", 5_000_000, 5_000_000) and not use_compile("auto", 10_000, 5_000_000)
    assert use_compile(True, 1, 5_000_000) and not use_compile(False, 10**9, 5_000_000)
    with pytest.raises(ConfigError, match="compile"):
        use_compile("sometimes", 1, 1)


def test_failed_compilation_falls_back_to_the_same_eager_showers(checkpoint, monkeypatch):
    """A node without a C++ compiler must still generate, with the showers eager mode gives."""
    from detsim.generate import iter_generated

    loaded = load_generator(checkpoint)
    energies = incident_energies(300, energies=[256.0, 65536.0])
    eager = np.concatenate([c.showers for c in iter_generated(loaded, energies, 128, seed=3, progress=False)])

    def broken_compile(module):
        def run(*args):  # called after the batch's random numbers were drawn: the retry must draw them afresh
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        fallback = np.concatenate([c.showers for c in iter_generated(loaded, energies, 128, seed=3,
                                                                      progress=False, compile=True)])
    np.testing.assert_array_equal(fallback, eager)


def test_a_killed_generation_resumes_to_the_same_file(checkpoint, tmp_path, capsys):
    """Batch b draws from its own seed, so continuing a partial output gives the uninterrupted file."""
    from detsim.io.resume import resumable_partial_path

    loaded = load_generator(checkpoint)
    energies = incident_energies(1000, spectrum={"kind": "log_uniform", "min_MeV": 256.0, "max_MeV": 4.2e6}, seed=3)
    whole = generate_to_file(loaded, energies, tmp_path / "whole.h5", batch_size=300, seed=9, progress=False)
    with partial_output_kept():
        out = generate_to_file(loaded, energies, tmp_path / "resumed.h5", batch_size=300, seed=9, progress=False)
    folder = resumable_partial_path(out)
    out.unlink()
    for block in sorted(folder.glob("block_*.h5"))[2:]:  # killed during the third batch
        block.unlink()
    with pytest.raises(DataFileError, match="seed"):  # another seed is another run: its partial output is not continued
        generate_to_file(loaded, energies, out, batch_size=300, seed=10, progress=False)
    generate_to_file(loaded, energies, out, batch_size=300, seed=9, progress=False)
    assert "600 showers already written" in capsys.readouterr().err and not folder.exists()
    a, b = read_showers(whole), read_showers(out)
    assert np.array_equal(a.showers, b.showers) and np.array_equal(a.incident_energy, b.incident_energy)
