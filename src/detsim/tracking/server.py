"""A local MLflow tracking server for reviewing runs: start (sqlite backend + artifact root), wait, stop by PID.

`make mlflow-server` / `make mlflow-server-stop` call `python -m detsim.tracking.server start|stop`; the tests
call the same functions. The server binds to 127.0.0.1 unless a host is given explicitly, because an MLflow
server has no authentication: exposing it means exposing every run and artifact (use an SSH tunnel).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from detsim.errors import DetsimError
from detsim.files import checked_output_dir

PID_FILE = "server.pid"
LOG_FILE = "server.log"


class TrackingServerStartError(DetsimError):
    """The MLflow server did not come up (port taken, bad folder, ...)."""


@dataclass(frozen=True)
class ServerHandle:
    """A running server: its URL, process id and state folder (sqlite db, artifacts, pid and log files)."""

    url: str
    pid: int
    state_dir: Path


def _mlflow_executable() -> list[str]:
    exe = Path(sys.executable).with_name("mlflow")
    return [str(exe)] if exe.exists() else [shutil.which("mlflow") or "mlflow"]


def server_command(state_dir: Path, host: str, port: int, workers: int = 1) -> list[str]:
    """`mlflow server` with a sqlite backend and a served artifact root, both inside `state_dir`."""
    return [
        *_mlflow_executable(), "server",
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
        "--backend-store-uri", f"sqlite:///{state_dir / 'mlflow.db'}",
        "--artifacts-destination", str(state_dir / "artifacts"),
        "--serve-artifacts",
    ]


def is_healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout_s) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(state_dir: str | Path, port: int = 5000, host: str = "127.0.0.1", timeout_s: float = 120.0,
          workers: int = 1) -> ServerHandle:
    """Start the server in the background (own process group), wait for `/health`, write the PID file."""
    state = checked_output_dir(state_dir, "MLflow server folder")
    url = f"http://{host}:{port}"
    if is_healthy(url):
        raise TrackingServerStartError(f"{url}: a server already answers there; stop it or choose another port")
    log = open(state / LOG_FILE, "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(server_command(state, host, port, workers), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    (state / PID_FILE).write_text(f"{proc.pid} {_start_ticks(proc.pid)}\n")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (state / LOG_FILE).read_text(errors="replace")[-600:]
            raise TrackingServerStartError(f"mlflow server exited with {proc.returncode}: {tail}")
        if is_healthy(url):
            return ServerHandle(url, proc.pid, state)
        time.sleep(0.3)
    stop(state)
    raise TrackingServerStartError(f"mlflow server at {url} not healthy after {timeout_s:.0f} s; see {state / LOG_FILE}")


def stop(state_dir: str | Path, timeout_s: float = 20.0) -> bool:
    """Stop the server whose PID is in `state_dir/server.pid` (its whole process group); False if none ran."""
    pid_file = Path(state_dir) / PID_FILE
    if not pid_file.is_file():
        return False
    fields = pid_file.read_text().split()
    pid_file.unlink()
    pid = int(fields[0])
    recorded = fields[1] if len(fields) > 1 else None
    if recorded is None or _start_ticks(pid) != recorded:
        # a stale file: the PID is gone or now names another process (PIDs are reused); never signal it
        print(f"{pid_file}: process {pid} is not the server this folder started; nothing stopped", file=sys.stderr)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)  # the server's own group: uvicorn/gunicorn workers go with it
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        _reap(pid)
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    return True


def _start_ticks(pid: int) -> str | None:
    """The process's start time (clock ticks after boot, /proc/<pid>/stat field 22): with the PID, its identity."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m detsim.tracking.server", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", default="mlflow-server", help="state folder: sqlite db, artifacts, pid, log")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            handle = start(args.dir, args.port, args.host, workers=args.workers)
            print(f"MLflow server {handle.url} (pid {handle.pid}); train with logger.tracking_uri={handle.url}")
        else:
            print("stopped" if stop(args.dir) else f"no server PID file in {args.dir}")
    except DetsimError as exc:
        print(f"detsim error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
