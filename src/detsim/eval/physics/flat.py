"""The `physics` section of metrics.json as flat MLflow metric names."""

from __future__ import annotations

import math
from typing import Any, Mapping


def flat_physics_metrics(section: Mapping[str, Any], prefix: str = "physics") -> dict[str, float]:
    """The `physics` section of metrics.json as MLflow metrics: `physics/passed` (0/1), `physics/n_failed`,
    `physics/<bin>/<check>` (the score), `physics/<bin>/<check>_passed` and `physics/<bin>/passed` (0/1), with
    `all` for the checks over all showers. No name is also a prefix of another (MLflow's file store keeps metrics
    as files in folders); non-finite scores are left out."""
    flat = {f"{prefix}/passed": float(bool(section["passed"])), f"{prefix}/n_failed": float(len(section["failures"]))}
    groups = {"all": section["all"]} | {label: b["checks"] for label, b in section["bins"].items()}
    for label, checks in groups.items():
        for name, check in checks.items():
            if check["score"] is not None and math.isfinite(check["score"]):
                flat[f"{prefix}/{label}/{name}"] = float(check["score"])
            if check["passed"] is not None:
                flat[f"{prefix}/{label}/{name}_passed"] = float(check["passed"])
        if label != "all" and section["bins"][label]["passed"] is not None:
            flat[f"{prefix}/{label}/passed"] = float(section["bins"][label]["passed"])
    return flat
