"""Progress of a long production: a rich bar with ETA in a terminal, a periodic plain line in batch logs."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class ProgressReporter:
    """`advance(k)` after each finished block; a plain line every `interval_s` when stderr is not a terminal."""

    def __init__(self, total: int, label: str, enabled: bool = True, interval_s: float = 30.0, stream: Any = None) -> None:
        self.total, self.label, self.enabled, self.interval_s = total, label, enabled, interval_s
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = self._last = time.perf_counter()
        self._bar: Any = None
        if enabled and self.stream.isatty():
            self._bar = Progress(TextColumn("[bold]geant4[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
            self._task = self._bar.add_task(label, total=total, rate="")
            self._bar.start()

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        return f"geant4 {self.label}: {self.done}/{self.total} showers, {rate:.2f} showers/s, ETA {eta:.0f} s"

    def advance(self, k: int) -> None:
        self.done += k
        if not self.enabled:
            return
        if self._bar is not None:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            self._bar.update(self._task, advance=k, rate=f"{rate:.2f} showers/s")
        elif time.perf_counter() - self._last >= self.interval_s or self.done >= self.total:
            self._last = time.perf_counter()
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
