"""Where a training run resumes: the checkpoint (`ckpt_path=auto`: the newest intact one of the run folder) and
the MLflow run of an earlier attempt in the same folder, so a requeued or rerun job continues both.

Every checkpoint named here is first loaded safely (weights only, `detsim.security.load_checkpoint`): a pickle
that would run code is refused in one line before Lightning touches it, and a broken file is skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from detsim.errors import DetsimError
from detsim.security import load_checkpoint

log = logging.getLogger(__name__)

RUN_ID_FILE = "mlflow_run_id"          # beside the checkpoints: a resumed job continues the same MLflow run
LIGHTNING_CKPT_KEYS = ("last", "hpc", "best")


def checkpoint_candidates(cfg: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Every checkpoint of the run: `hpc_ckpt_*.ckpt` (preemption) in the run folder and whatever the checkpoint
    callbacks of `cfg.callbacks` wrote into their `dirpath`."""
    candidates = list(out_dir.glob("hpc_ckpt_*.ckpt"))
    for callback_cfg in (cfg.get("callbacks") or {}).values():
        if callback_cfg is not None and callback_cfg.get("dirpath"):
            candidates += list(Path(str(callback_cfg["dirpath"])).glob("*.ckpt"))
    return candidates


def newest_checkpoint(cfg: Mapping[str, Any], out_dir: Path) -> Path | None:
    """The newest intact checkpoint of the run (`last*.ckpt` first among equals); a broken one is skipped with a
    warning."""
    newest_first = sorted(set(checkpoint_candidates(cfg, out_dir)),
                          key=lambda p: (p.stat().st_mtime_ns, p.name.startswith("last")), reverse=True)
    for path in newest_first:
        try:
            load_checkpoint(path)
        except DetsimError as exc:
            log.warning("ckpt_path=auto: skipping broken checkpoint %s (%s)", path, exc)
            continue
        return path
    return None


def resume_checkpoint(cfg: Mapping[str, Any], out_dir: Path) -> str | None:
    """`cfg.ckpt_path` as Lightning takes it: `auto` picks the newest checkpoint of this run (or none), a file is
    checked and resolved, None and Lightning's own keys (last, hpc, best) pass through."""
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and str(ckpt) == "auto":
        found = newest_checkpoint(cfg, out_dir)
        log.info("ckpt_path=auto: %s", found or "no checkpoint yet, starting from scratch")
        ckpt = None if found is None else str(found)
    if ckpt is None or str(ckpt) in LIGHTNING_CKPT_KEYS:
        return ckpt
    path = Path(str(ckpt)).expanduser().resolve()
    load_checkpoint(path)
    return str(path)


def previous_run_id(out_dir: Path, ckpt_path: str | None) -> str | None:
    """The MLflow run of an earlier attempt in the same folder, when this one resumes from a checkpoint."""
    marker = out_dir / RUN_ID_FILE
    resuming = ckpt_path is not None or any(out_dir.glob("hpc_ckpt_*.ckpt"))
    return marker.read_text().strip() or None if resuming and marker.is_file() else None


def remember_run_id(out_dir: Path, run_id: str) -> None:
    """Write the run's MLflow id beside its checkpoints, for `previous_run_id` of a later attempt."""
    (out_dir / RUN_ID_FILE).write_text(str(run_id))
