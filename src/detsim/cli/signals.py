"""SIGTERM and SIGINT end a detsim app cleanly: its worker processes go with it, its resumable state stays.

Without a handler a SIGTERM ends the Python process at once: no `finally`, no `__exit__`, so worker processes
(Geant4 workers, forked pools) are left running as orphans, and a `kill <pid>` of `detsim-simulate
simulator=geant4 n_workers=2` left its workers simulating. `stopped_by_signals` installs one handler for both
signals, used by every console script (`detsim.cli.app.hydra_app`) and by the pipelines:

1. the first signal notes the app's descendant processes (before any of them dies and its own children are
   handed to init) and raises `Interrupted` in the main thread, so the app unwinds as it does on an error:
   pools terminate their workers, `detsim.io.resume.resumable_output` keeps the finished blocks of
   `<out>.partial/` and says to rerun the same command, Lightning tears the trainer down;
2. once unwound, every noted or remaining descendant still alive is terminated (then killed after a grace
   period), and the process exits with the conventional status 128 + signal number (143 for SIGTERM, 130 for
   SIGINT);
3. a second signal while unwinding skips the rest: descendants are killed and the process exits at once.

Nothing is removed or rewritten on the way out: what a kill -9 would leave (complete block files, complete
checkpoints) is what a signal leaves, and rerunning the same command continues from it.
A forked worker inherits the handler; there it restores the default action and re-sends the signal to itself,
so a worker terminated by its pool simply dies.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

import psutil

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT)
GRACE_S = 5.0  # how long descendants get to end after SIGTERM before SIGKILL


class Interrupted(BaseException):
    """Raised by the handler in the main thread. A BaseException, as KeyboardInterrupt is: `except Exception`
    in library code does not swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"{signal.Signals(self.signum).name} received")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")  # end by themselves with their parent


def _is_helper(proc: psutil.Process) -> bool:
    """multiprocessing's own helper processes, which leave when their parent does (killed earlier, the parent
    relaunches them at exit with a warning)."""
    try:
        return any(helper in part for part in proc.cmdline() for helper in HELPERS)
    except psutil.Error:
        return True  # gone


def _descendants(exclude: set[int]) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process().children(recursive=True) if p.pid not in exclude and not _is_helper(p)]
    except psutil.Error:
        return []


def end_processes(processes: list[psutil.Process], grace_s: float = GRACE_S) -> None:
    """SIGTERM each process still alive, then SIGKILL whatever outlives `grace_s`. psutil.Process objects
    remember their start time, so a pid reused since they were noted is never signalled."""
    alive = []
    for proc in processes:
        try:
            proc.terminate()
            alive.append(proc)
        except psutil.Error:  # gone already
            pass
    _, survivors = psutil.wait_procs(alive, timeout=grace_s)
    for proc in survivors:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(survivors, timeout=grace_s)


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Run the block with the shared SIGTERM/SIGINT handler (module docstring); restore the old handlers after.

    A no-op outside the main thread (Python delivers signals there only). Processes that were already children
    when the block started (a test harness's, a caller's) are left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()
    before = {p.pid for p in _descendants(set())}
    noted: list[psutil.Process] = []
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:  # a forked worker: die of the signal, as without the handler
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if received:  # a second signal while unwinding: no more waiting
            end_processes(noted + _descendants(before), grace_s=0.5)
            os._exit(128 + received[0])
        received.append(signum)
        noted.extend(_descendants(before))
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOPPING_SIGNALS}
    try:
        yield
    except BaseException:  # noqa: B036 - an exception raised while unwinding from the signal ends like the signal
        if not received:
            raise
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        if received:
            end_processes(noted + _descendants(before))
    if received:
        name = signal.Signals(received[0]).name
        print(f"detsim: stopped by {name}; its worker processes were ended", file=sys.stderr)
        sys.exit(128 + received[0])
