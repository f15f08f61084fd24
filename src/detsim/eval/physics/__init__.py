"""Physics report: per incident-energy bin, does a generated sample reproduce the reference's calorimeter physics?

Per bin: response E_tot/E_inc (mean, median), resolution (rms, central width), hit fraction, tails (fraction
of showers outside the reference's E_tot/E_inc range, largest voxel / E_inc) and the longitudinal and radial
profiles, each with the reference's statistical uncertainty (a seeded bootstrap over reference showers) and a
pass/fail against a tolerance from `conf/eval/physics/default.yaml`.

Why beside the classifier AUCs and separation powers: a histogram metric is dominated by the bulk, so it cannot
see a tail of 0.7 % of the showers (issue 23: E_tot/E_inc ranked sixth by separation power while its rms was
26x Geant4's at 1-3 GeV). Here tails are tested explicitly.

Numpy only, no files, no tracking: `physics_report(reference, generated, geometry, cfg)` compares two in-memory
samples (the evaluation suite, a training callback); `summarize` reduces a sample chunk by chunk to the
per-shower numbers every statistic needs, so the voxels are passed over once.

The modules, one job each: `config` (the checked settings), `summaries` (a sample reduced to per-shower numbers),
`statistics` (the per-bin statistics and their bootstrap), `checks` (one comparison and its score), `report`
(the per-bin and overall checks assembled into a `PhysicsReport`) and `flat` (its flat MLflow names).
"""

from __future__ import annotations

from detsim.eval.physics.checks import PROFILES, RATIO_CHECKS, Check, Profile
from detsim.eval.physics.config import PhysicsConfig
from detsim.eval.physics.flat import flat_physics_metrics
from detsim.eval.physics.report import BinReport, PhysicsReport, bin_label, compare_summaries, physics_report
from detsim.eval.physics.summaries import ShowerSummaries, radial_rings, summarize

__all__ = [
    "PROFILES", "RATIO_CHECKS", "BinReport", "Check", "PhysicsConfig", "PhysicsReport", "Profile", "ShowerSummaries",
    "bin_label", "compare_summaries", "flat_physics_metrics", "physics_report", "radial_rings", "summarize",
]
