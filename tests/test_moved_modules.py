"""Old module paths from before the room redesign still import, and give the very objects of the new modules,
so pickles (MLflow models) and user scripts that name the old paths keep working."""

from __future__ import annotations

import importlib
import pickle
import warnings

import pytest

from detsim._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED), ids=str)
def test_old_path_gives_the_new_modules_objects(old: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        alias = importlib.import_module(old)
    new = importlib.import_module(MOVED[old])
    public = [k for k in vars(new) if not k.startswith("_")]
    assert public and all(getattr(alias, k) is getattr(new, k) for k in public)


def test_a_pickle_naming_an_old_module_unpickles_to_the_new_class() -> None:
    from detsim.metrics.roc import RocCurve
    import numpy as np

    curve = RocCurve(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    old_pickle = pickle.dumps(curve, protocol=0).replace(b"detsim.metrics.roc", b"detsim.eval.roc")
    assert b"detsim.eval.roc" in old_pickle
    loaded = pickle.loads(old_pickle)
    assert type(loaded) is RocCurve and loaded.auc == pytest.approx(0.5)


def test_an_unknown_old_name_still_fails() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("detsim.eval.no_such_module")
