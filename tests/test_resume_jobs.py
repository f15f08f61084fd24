"""Long simulate/generate jobs resume from their partial folder (issue 19, point 2): the resumed file equals
the one an uninterrupted job writes; another run's partial output is refused; nothing empty is left behind."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import partial_output_kept
from detsim.config import compose_config
from detsim.errors import DataFileError
from detsim.io import count_showers, read_showers
from detsim.io.resume import resumable_output, resumable_partial_path
from detsim.showers import CaloShowers

FINGERPRINT = {"seed": 1, "n": 12}


def _rows(first: int, n: int) -> CaloShowers:
    e = np.arange(first, first + n, dtype=np.float32) + 1000.0
    return CaloShowers(e, np.outer(e, np.arange(1, 7, dtype=np.float32)) * 0.01)


class _Killed(Exception):
    pass


def _killed_writer(path: str) -> None:
    import detsim.io.resume as resume

    real = resume.HDF5ShowerWriter.append

    def die_in_the_third_block(self, chunk):  # half of block 2 written to its temporary file, then kill -9
        if chunk.incident_energy[0] >= 1008.0:
            real(self, CaloShowers(chunk.incident_energy[:2], chunk.showers[:2]))
            os._exit(0)
        real(self, chunk)

    resume.HDF5ShowerWriter.append = die_in_the_third_block
    with resumable_output(path, 6, FINGERPRINT) as writer:
        for first in range(0, 12, 4):
            writer.append(_rows(first, 4))


def test_a_killed_job_leaves_its_blocks_and_the_same_job_continues_after_the_last_one(tmp_path: Path, capsys) -> None:
    target = tmp_path / "g4.h5"
    proc = mp.get_context("fork").Process(target=_killed_writer, args=(str(target),))
    proc.start()
    proc.join()
    folder = resumable_partial_path(target)
    assert not target.exists() and folder.name == "g4.partial"
    assert count_showers(str(folder / "*.h5")) == 8  # the two finished blocks read as shards; the cut one is not there
    with resumable_output(target, 6, FINGERPRINT) as writer:
        assert writer.n_written == 8
        writer.append(_rows(8, 4))
    assert "8 showers already written" in capsys.readouterr().err and not folder.exists()
    got = read_showers(target)
    assert np.array_equal(got.incident_energy, _rows(0, 12).incident_energy)
    assert np.array_equal(got.showers, _rows(0, 12).showers)


def test_another_runs_partial_output_is_refused_and_resume_false_starts_over(tmp_path: Path, capsys) -> None:
    target = tmp_path / "out.root"  # any output format: blocks are HDF5, the merge writes the target's format
    with pytest.raises(_Killed):
        with resumable_output(target, 6, FINGERPRINT) as writer:
            writer.append(_rows(0, 4))
            raise _Killed("pre-empted")
    folder = resumable_partial_path(target)
    assert count_showers(str(folder / "*.h5")) == 4 and "rerun the same command" in capsys.readouterr().err
    with pytest.raises(DataFileError, match=r"out\.partial.*resume=false.*\(seed\)"):
        with resumable_output(target, 6, {**FINGERPRINT, "seed": 2}):
            pass
    with resumable_output(target, 6, {**FINGERPRINT, "seed": 2}, resume=False) as writer:
        assert writer.n_written == 0
        writer.append(_rows(100, 4))
    assert read_showers(target, n_voxels=6).incident_energy[0] == 1100.0 and not folder.exists()


def test_a_job_stopped_before_its_first_block_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.h5"
    with pytest.raises(KeyboardInterrupt):
        with resumable_output(target, 6, FINGERPRINT) as writer:
            assert writer.n_written == 0
            raise KeyboardInterrupt
    assert sorted(tmp_path.iterdir()) == []


def test_a_second_job_on_the_same_output_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    target = tmp_path / "out.h5"
    with resumable_output(target, 6, FINGERPRINT) as first:
        first.append(_rows(0, 4))
        with pytest.raises(DataFileError, match="locked by a running job"):
            with resumable_output(target, 6, FINGERPRINT):
                pass
        first.append(_rows(4, 4))
    assert count_showers(target) == 8


def _cut_after(target: Path, blocks: int) -> Path:
    """What a kill after `blocks` block files leaves: the job's folder with only those blocks."""
    folder = resumable_partial_path(target)
    assert sorted(p.name for p in folder.glob("block_*.h5"))[:blocks] == [f"block_{i:06d}.h5" for i in range(blocks)]
    for extra in sorted(folder.glob("block_*.h5"))[blocks:]:
        extra.unlink()
    target.unlink()
    return folder


def test_a_resumed_simulation_equals_an_uninterrupted_one(tmp_path: Path, capsys) -> None:
    from detsim.sim.calo.runner import run

    overrides = ["n=2500", "seed=4", "simulator.block_size=500", "simulator.threads=1", "chunk_size=1000", "progress=false"]
    whole = run(compose_config("simulate", [*overrides, f"out={tmp_path / 'whole.h5'}"]))
    out = tmp_path / "resumed.h5"
    with partial_output_kept():
        run(compose_config("simulate", [*overrides, f"out={out}"]))
    _cut_after(out, 1)  # the first 1000 showers
    with pytest.raises(DataFileError, match=r"resume=false.*\(seed\)"):  # another seed: another run
        run(compose_config("simulate", [*overrides, "seed=5", f"out={out}"]))
    # a changed speed setting (threads, chunk size) is not a different run
    run(compose_config("simulate", [*overrides, "simulator.threads=2", "chunk_size=1500", f"out={out}"]))
    assert "1000 showers already written" in capsys.readouterr().err
    a, b = read_showers(whole), read_showers(out)
    assert np.array_equal(a.showers, b.showers) and np.array_equal(a.incident_energy, b.incident_energy)
