"""The whole paper at smoke scale through SLURM, timed: where a task's time goes.

    python benchmarks/rehearsal.py                          # the local cluster (scripts/slurm/), 1 CPU per task
    python benchmarks/rehearsal.py --pack-minutes 1.5 --partition debug

It makes the synthetic data (scripts/make_smoke_data.py), launches `sweeps=paper scale=smoke`
with launcher=slurm, waits until `walign status` counts every run complete, and then splits the
array tasks' time (sacct's elapsed seconds of each task) into what the runs report of themselves
in summary.json: training steps (wall_seconds minus evaluation and compiling), evaluation
(eval_seconds: the validation and test passes and the alignment scoring), data loading
(load_seconds) and compiling (compile_seconds); what is left of the task is start-up (the Python
process, imports, submitit, building each run's network and writing its files). A smoke run
trains for seconds, so the overheads are as large here as they will ever be: the share of
start-up plus data loading is the one to watch. The raw output goes to the screen and to
benchmarks/results/rehearsal-<host>-<date>.txt.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}, "OMP_NUM_THREADS": "1"}


def run(*cmd: str, timeout: float = 600, cwd: Path | None = None) -> str:
    done = subprocess.run(list(cmd), cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def task_seconds(arrays: list[str]) -> dict[str, float]:
    """Elapsed seconds of every array task (sacct), by task id."""
    out = run("sacct", "-n", "-X", "-P", "-j", ",".join(arrays), "-o", "JobID,ElapsedRaw,State")
    seconds = {}
    for line in out.splitlines():
        job, elapsed, state = (line.split("|") + ["", ""])[:3]
        if elapsed.isdigit() and state.startswith("COMPLETED"):
            seconds[job] = float(elapsed)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--partition", default="debug")
    p.add_argument("--pack-minutes", type=float, default=1.5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    work = Path(tempfile.mkdtemp(prefix="walign-rehearsal-"))
    data, results = work / "data", work / "results"
    run(sys.executable, str(ROOT / "scripts" / "make_smoke_data.py"), str(data))
    say(f"machine: {platform.node()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    cmd = [sys.executable, str(ROOT / "main.py"), "-m", "sweeps=paper", "scale=smoke", f"data_root={data}",
           "verify_md5.cifar10=false", "launcher=slurm", f"hydra.launcher.partition={args.partition}",
           "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
           "hydra.launcher.timeout_min=30", f"hydra.launcher.pack_minutes={args.pack_minutes}", "device=cpu",
           "progress=none", f"results_dir={results}"]
    say("command: " + " ".join(cmd[1:]))
    start = time.perf_counter()
    out = run(*cmd, cwd=work)
    submitted = time.perf_counter() - start
    say(out.strip().splitlines()[-1])
    runs = int(re.search(r"^walign sweep: (\d+) runs", out, re.M).group(1))
    arrays = re.search(r"submitted array jobs? ([\d, ]+):", out).group(1).replace(" ", "").split(",")
    while True:
        status = run(sys.executable, "-m", "walign.status", "status", str(results))
        total = status[status.rindex("total"):].splitlines()[1]
        if re.search(rf"\b{runs} complete\b", total):
            break
        if re.search(r"\b[1-9]\d* failed\b", total):
            sys.exit(f"a run failed:\n{status}")
        time.sleep(1)
    wall = time.perf_counter() - start
    while run("squeue", "-h", "-o", "%i").strip():
        time.sleep(1)
    time.sleep(3)  # sacct's record of the last task lags a moment behind the queue
    tasks = task_seconds(arrays)
    summaries = [json.loads(p.read_text()) for p in results.rglob("summary.json")]
    spent = {"evaluation": sum(s.get("eval_seconds", 0.0) for s in summaries),
             "data loading": sum(s.get("load_seconds", 0.0) for s in summaries),
             "compiling": sum(s.get("compile_seconds", 0.0) for s in summaries)}
    spent["training steps"] = sum(s["wall_seconds"] for s in summaries) - spent["evaluation"] - spent["compiling"]
    task_total = sum(tasks.values())
    spent["start-up and the rest"] = task_total - sum(spent.values())
    say(f"wall: {wall:.0f} s from the command to every run complete (the command returned after {submitted:.0f} s)")
    say(f"runs: {runs}; tasks: {len(tasks)}; task seconds (sacct, summed): {task_total:.0f}")
    for name in ("training steps", "evaluation", "data loading", "compiling", "start-up and the rest"):
        say(f"  {name:22s} {spent[name]:8.1f} s  {100 * spent[name] / task_total:5.1f} %")
    overhead = spent["start-up and the rest"] + spent["data loading"]
    say(f"start-up plus data loading: {100 * overhead / task_total:.1f} % of task time (target: under 20 %)")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"rehearsal-{platform.node()}-{time.strftime('%Y-%m-%d')}.txt"
    path.write_text("\n".join(lines) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
