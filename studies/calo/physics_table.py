"""Markdown table of a `detsim-evaluate` physics report (metrics.json), one column per incident-energy bin.

    python studies/calo/physics_table.py eval/metrics.json [more metrics.json ...]

Used for docs/studies/2026-12-07-physics-fidelity.md; each cell is generated / reference (or the score against
its tolerance) and PASS/FAIL as the report judged it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = [("response_mean", "mean E_tot/E_inc", "{g:.4f} / {r:.4f}"), ("response_median", "median", "{g:.4f} / {r:.4f}"),
        ("rms_ratio", "rms ratio", "{s:.3f}"), ("width_ratio", "central-width ratio", "{s:.3f}"),
        ("hit_fraction", "hit fraction (gen/ref - 1)", "{s:+.3f}"), ("max_voxel_ratio", "largest voxel / E_inc: gen / ref",
                                                                    "{g:.3f} / {r:.3f}"),
        ("longitudinal_profile", "longitudinal, worst bin", "{s:.1%} (layer {at})"),
        ("radial_profile", "radial, worst bin", "{s:.1%} (ring {at})")]


def cell(check: dict, fmt: str) -> str:
    text = fmt.format(g=check.get("generated") or 0.0, r=check.get("reference") or 0.0, s=check.get("score") or 0.0,
                      at=check.get("at"))
    verdict = {True: "", False: " **FAIL**", None: ""}[check.get("passed")]
    return text + verdict


def table(path: Path) -> str:
    report = json.loads(path.read_text())["physics"]
    bins = sorted(report["bins"], key=lambda k: report["bins"][k]["e_min_gev"])
    lines = [f"| check | {' | '.join(bins)} |", "|---|" + "---|" * len(bins)]
    for key, label, fmt in ROWS:
        cells = [cell(report["bins"][b]["checks"][key], fmt) if key in report["bins"][b]["checks"] else "-" for b in bins]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    overall = report["all"]["outside_fraction"]
    lines.append(f"| E_tot/E_inc outside the reference's range (all) | {overall['generated']:.3%} "
                 f"(reference vs itself {overall['reference']:.3%}){'' if overall['passed'] else ' **FAIL**'} |")
    lines.append(f"\nverdict: {report['verdict']}")
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"### {arg}\n\n{table(Path(arg))}\n")
