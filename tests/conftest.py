"""Shared test fixtures: paths to the public reference files and the config tree."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CONF = REPO / "conf"


@pytest.fixture(scope="session")
def calochallenge_dir() -> Path:
    path = SHARED_DATA / "calochallenge"
    if not path.is_dir():
        pytest.skip(f"public CaloChallenge binning files not found at {path}")
    return path
