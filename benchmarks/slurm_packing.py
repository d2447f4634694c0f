"""The same tiny runs on a SLURM cluster, one array task per run against packed, and the start-up
cost a run pays in a process of its own.

    python benchmarks/slurm_packing.py                      # 40 runs on the local cluster (scripts/slurm/)
    python benchmarks/slurm_packing.py --runs 40 --partition debug --tasks 2

Both modes submit the same runs (Normal, width 4, one epoch on the embedded sample, 40 seeds)
with the same number of tasks running at once (``--tasks``: the packed mode makes that many
tasks, the one-per-task mode lets that many run in parallel), and time submission to the last
summary.json. The start-up cost is measured directly: `python main.py` for one such run, from the
process start to its end, minus the seconds the run itself reports for its epoch.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["rule=normal", "width=4", "epochs=1", "progress=lines", "device=cpu", "eval_test=false"]


def env() -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}, "OMP_NUM_THREADS": "1"}


def queue_empty() -> bool:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=60)
    return out.returncode == 0 and not out.stdout.strip()


def epoch_seconds(results: Path) -> list[float]:
    return [json.loads(line)["seconds"] for p in results.rglob("metrics.jsonl") for line in p.read_text().splitlines()]


def sweep(results: Path, runs: int, partition: str, tasks: int, packed: bool) -> float:
    """Seconds from submitting the sweep to its last run's summary (and an empty queue)."""
    layout = [f"hydra.launcher.runs_per_task={-(-runs // tasks)}"] if packed else \
        ["hydra.launcher.runs_per_task=1", f"hydra.launcher.array_parallelism={tasks}"]
    cmd = [sys.executable, str(ROOT / "main.py"), "-m", "launcher=slurm", f"hydra.launcher.partition={partition}",
           "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
           "hydra.launcher.timeout_min=30", *layout, *TINY, f"seed=range(1,{runs + 1})", f"results_dir={results}"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=results.parent, env=env(), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"slurm_packing: the sweep failed:\n{done.stdout}{done.stderr}")
    print(f"  {done.stdout.strip().splitlines()[-1]}", flush=True)
    while len(list(results.rglob("summary.json"))) < runs or not queue_empty():
        if time.perf_counter() - start > 3600:
            sys.exit("slurm_packing: the sweep did not finish within an hour")
        time.sleep(0.5)
    return time.perf_counter() - start


def startup_cost(folder: Path) -> tuple[float, float]:
    """(process wall seconds, of which start-up) of one tiny run in a process of its own."""
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "main.py"), *TINY, f"results_dir={folder}"], cwd=folder.parent,
                   env=env(), capture_output=True, check=True, timeout=600)
    wall = time.perf_counter() - start
    return wall, wall - sum(epoch_seconds(folder))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    version = subprocess.run(["sinfo", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{platform.node()}, {os.cpu_count()} CPUs ({cpu}), {version}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--partition", default="debug")
    parser.add_argument("--tasks", type=int, default=2, help="tasks running at once in both modes")
    args = parser.parse_args()
    if not queue_empty():
        sys.exit("slurm_packing: the SLURM queue is not empty; wait for it (times would include other jobs)")
    print(f"machine: {machine()}")
    print(f"runs: {args.runs} x ({' '.join(TINY)}), {args.tasks} tasks at once", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        wall, startup = startup_cost(Path(tmp) / "single")
        print(f"one run in a process of its own: {wall:.2f} s, of which start-up (process start to first step, "
              f"and the end) {startup:.2f} s", flush=True)
        one = sweep(Path(tmp) / "one-per-task", args.runs, args.partition, args.tasks, packed=False)
        print(f"one task per run: {one:.1f} s ({one / args.runs * args.tasks:.2f} s per run and slot)", flush=True)
        packed = sweep(Path(tmp) / "packed", args.runs, args.partition, args.tasks, packed=True)
        print(f"packed into {args.tasks} tasks: {packed:.1f} s ({packed / args.runs * args.tasks:.2f} s per run "
              f"and slot)", flush=True)
        print(f"packed / one task per run: {packed / one:.2f}")


if __name__ == "__main__":
    main()
