"""Compiled against eager steps when the machine is shared: by walign's own processes, and by others.

    python benchmarks/busy_machine.py                  # width 16 Align-ada on the embedded sample, 4 epochs
    python benchmarks/busy_machine.py --width 16 --epochs 4 --burners 4

Two situations, each timed compiled and eager, one after the other:

1. walign's own: ``launcher=local`` with two runs at once (seeds 1 and 2), each process given its
   share of the cores (walign.packing.share_of_cores). Per-epoch seconds from metrics.jsonl.
2. someone else's: one run (``launcher=basic``) while ``--burners`` other processes spin on the
   CPU (plain Python loops, as other users' jobs would), the load walign cannot share: with
   torch's threads on every core, and with OMP_NUM_THREADS=1.

Epoch 1 holds the compiling, so the medians are over epochs 2 onwards. The raw output goes to the
screen and to benchmarks/results/busy-<host>-<date>.txt.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10000))


def epochs_after_the_first(results: Path) -> list[float]:
    return [json.loads(line)["seconds"] for path in results.rglob("metrics.jsonl")
            for line in path.read_text().splitlines() if json.loads(line)["epoch"] > 1]


def sweep(args, compiled: bool, launcher: str, seeds: str, threads: int | None = None) -> list[float]:
    results = Path(tempfile.mkdtemp(prefix="walign-busy-"))
    cmd = [sys.executable, str(ROOT / "main.py"), "-m", f"launcher={launcher}", "rule=align_ada", f"width={args.width}",
           f"epochs={args.epochs}", f"seed={seeds}", f"compile={str(compiled).lower()}", "device=cpu", "progress=none",
           "eval_test=false", f"results_dir={results}"]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="walign-inductor-")  # every compiled run compiles
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run(cmd, cwd=results, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[2:])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return epochs_after_the_first(results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--burners", type=int, default=4)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    cores = len(os.sched_getaffinity(0))
    say(f"machine: {platform.node()}, {model}, {cores} cores usable; python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    say(f"runs: rule=align_ada width={args.width} epochs={args.epochs} on the embedded sample, device=cpu, "
        f"eval_test=false; seconds per epoch, epochs 2-{args.epochs} (epoch 1 holds the compiling)")

    def row(name: str, eager: list[float], compiled: list[float]) -> None:
        e, c = statistics.median(eager), statistics.median(compiled)
        say(f"{name}: eager {e:.2f} s, compiled {c:.2f} s per epoch (medians of {len(eager)} and {len(compiled)}); "
            f"compiled/eager {c / e:.2f}")

    row("launcher=local, two runs at once (walign shares the cores)",
        sweep(args, False, "local", "1,2"), sweep(args, True, "local", "1,2"))
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=spin, args=(stop,), daemon=True) for _ in range(args.burners)]
    for burner in burners:
        burner.start()
    try:
        busy = (sweep(args, False, "basic", "1"), sweep(args, True, "basic", "1"))
        single = (sweep(args, False, "basic", "1", 1), sweep(args, True, "basic", "1", 1))
    finally:
        stop.set()
        for burner in burners:
            burner.join()
    row(f"launcher=basic, one run beside {args.burners} other busy processes, {cores} threads", *busy)
    row(f"launcher=basic, one run beside {args.burners} other busy processes, OMP_NUM_THREADS=1", *single)
    row("launcher=basic, one run on the idle machine", sweep(args, False, "basic", "1"), sweep(args, True, "basic", "1"))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"busy-{platform.node()}-{time.strftime('%Y-%m-%d-%H%M')}.txt"
    path.write_text("\n".join(lines) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
