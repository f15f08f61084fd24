"""Dry-run a SLURM batch script on one machine: its "nodes" become local processes with SLURM's variables.

    python pipelines/slurm/dry_run.py pipelines/slurm/train_ddp.sbatch --nodes 2 --ntasks-per-node 1 \
        -- trainer.accelerator=cpu trainer.sync_batchnorm=false data.path=$PWD/showers.h5
    python pipelines/slurm/dry_run.py pipelines/slurm/train_ddp.sbatch --print   # the tasks srun would start

The script runs under bash with the variables SLURM gives a batch job (SLURM_JOB_ID, SLURM_NNODES,
SLURM_NTASKS, SLURM_NTASKS_PER_NODE, SLURM_JOB_NODELIST, ...) and an `srun` first on PATH that starts
one local process per task with the per-task variables (SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID,
SLURMD_NODENAME) and each output line prefixed with its rank, like `srun --label`. The "nodes" are the
loopback addresses 127.0.0.1, 127.0.0.2, ... written in SLURM's compressed form `127.0.0.[1-N]`, so the
script's own derivation of MASTER_ADDR from the node list is what the ranks use to meet.
`--print` makes `srun` print each task's environment and command as JSON lines instead of running them.
Unset `#SBATCH` values (nodes, tasks per node, CPUs per task, job name) come from the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Sequence

_PRINT = "DETSIM_DRY_RUN_PRINT"  # set in the job environment: srun prints the tasks instead of running them
_SHOWN = ("SLURM_", "SLURMD_", "MASTER_", "OMP_NUM_THREADS", "MLFLOW_TRACKING_URI")


def sbatch_options(script: Path) -> dict[str, str]:
    """The `#SBATCH --key=value` (or `--key value`) directives at the top of a batch script."""
    options: dict[str, str] = {}
    for line in script.read_text().splitlines():
        match = re.match(r"#SBATCH\s+--([\w-]+)(?:[=\s]+(\S+))?", line)
        if match:
            options[match[1]] = match[2] or ""
    return options


def job_environment(nodes: int, tasks_per_node: int, cpus_per_task: int, job_id: int, job_name: str,
                    submit_dir: Path) -> dict[str, str]:
    """The variables SLURM sets for a batch script (it runs on the first node, as task 0 of the batch step)."""
    nodelist = "127.0.0.1" if nodes == 1 else f"127.0.0.[1-{nodes}]"
    return {
        "SLURM_JOB_ID": str(job_id), "SLURM_JOBID": str(job_id), "SLURM_JOB_NAME": job_name,
        "SLURM_NNODES": str(nodes), "SLURM_JOB_NUM_NODES": str(nodes),
        "SLURM_NTASKS": str(nodes * tasks_per_node), "SLURM_NPROCS": str(nodes * tasks_per_node),
        "SLURM_NTASKS_PER_NODE": str(tasks_per_node), "SLURM_TASKS_PER_NODE": f"{tasks_per_node}(x{nodes})",
        "SLURM_CPUS_PER_TASK": str(cpus_per_task), "SLURM_JOB_NODELIST": nodelist, "SLURM_NODELIST": nodelist,
        "SLURM_SUBMIT_DIR": str(submit_dir), "SLURM_SUBMIT_HOST": "127.0.0.1", "SLURMD_NODENAME": "127.0.0.1",
        "SLURM_NODEID": "0", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
    }


def task_environment(base: dict[str, str], rank: int) -> dict[str, str]:
    """The variables srun adds for task `rank` (tasks fill the nodes in order, as srun's block distribution)."""
    per_node = int(base["SLURM_NTASKS_PER_NODE"])
    node = rank // per_node
    return {**base, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank % per_node), "SLURM_NODEID": str(node),
            "SLURMD_NODENAME": f"127.0.0.{node + 1}", "SLURM_STEP_ID": "0",
            "SLURM_STEP_NUM_TASKS": base["SLURM_NTASKS"], "SLURM_STEP_NUM_NODES": base["SLURM_NNODES"],
            "SLURM_STEP_NODELIST": base["SLURM_JOB_NODELIST"]}


def _relay(stream: IO[str], rank: int, lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            sys.stdout.write(f"{rank}: {line}")
            sys.stdout.flush()


def srun(command: Sequence[str]) -> int:
    """Start every task of the step as a local process (or print them); the step fails if any task fails."""
    command = list(command)
    while command and command[0].startswith("-"):  # srun's own options: the allocation is already fixed
        command.pop(0)
    base = dict(os.environ)
    ranks = range(int(base["SLURM_NTASKS"]))
    if base.get(_PRINT):
        for rank in ranks:
            env = task_environment(base, rank)
            shown = {k: v for k, v in sorted(env.items()) if k.startswith(_SHOWN)}
            print(json.dumps({"rank": rank, "env": shown, "argv": command}))
        return 0
    lock = threading.Lock()
    tasks = [subprocess.Popen(command, env=task_environment(base, rank), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in ranks]
    relays = [threading.Thread(target=_relay, args=(t.stdout, rank, lock)) for rank, t in zip(ranks, tasks)]
    for relay in relays:
        relay.start()
    codes = [task.wait() for task in tasks]
    for relay in relays:
        relay.join()
    return next((code for code in codes if code != 0), 0)


def run_script(script: Path, args: Sequence[str], nodes: int | None = None, tasks_per_node: int | None = None,
               cpus_per_task: int | None = None, job_id: int | None = None, print_only: bool = False,
               env: dict[str, str] | None = None, cwd: Path | None = None,
               stdout: int | IO[str] | None = None) -> subprocess.CompletedProcess:
    """Run `bash script args...` as SLURM would run it on the first node, with the local `srun` on PATH."""
    opts = sbatch_options(script)
    job = job_environment(
        nodes=nodes or int(opts.get("nodes", "1")), tasks_per_node=tasks_per_node or int(opts.get("ntasks-per-node", "1")),
        cpus_per_task=cpus_per_task or int(opts.get("cpus-per-task", "1")),
        job_id=job_id if job_id is not None else random.randint(1, 10**6),
        job_name=opts.get("job-name", script.stem), submit_dir=(cwd or Path.cwd()).resolve())
    with tempfile.TemporaryDirectory(prefix="detsim-srun-") as bin_dir:
        shim = Path(bin_dir) / "srun"
        shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))}"
                        f" --srun-step \"$@\"\n")
        shim.chmod(0o755)
        full = {k: v for k, v in (env if env is not None else os.environ).items() if not k.startswith("SLURM")}
        full.update(job, PATH=f"{bin_dir}{os.pathsep}{full.get('PATH', '')}")
        if print_only:
            full[_PRINT] = "1"
        return subprocess.run(["bash", str(script), *args], env=full, cwd=cwd, stdout=stdout,
                              stderr=subprocess.STDOUT if stdout is not None else None, text=True)


def rendered_tasks(script: Path, args: Sequence[str], **kwargs) -> list[dict]:
    """Each task the script would start: {"rank", "env" (SLURM_*, MASTER_*, ...), "argv"}."""
    done = run_script(script, args, print_only=True, stdout=subprocess.PIPE, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed in the dry run ({done.returncode}):\n{done.stdout}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--srun-step"]:
        return srun(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("script", type=Path)
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--ntasks-per-node", type=int)
    parser.add_argument("--cpus-per-task", type=int)
    parser.add_argument("--job-id", type=int)
    parser.add_argument("--print", action="store_true", help="print the tasks srun would start, run nothing")
    script_args = argv[argv.index("--") + 1:] if "--" in argv else []
    opts = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    return run_script(opts.script, script_args, nodes=opts.nodes, tasks_per_node=opts.ntasks_per_node,
                      cpus_per_task=opts.cpus_per_task, job_id=opts.job_id, print_only=opts.print).returncode


if __name__ == "__main__":
    sys.exit(main())
