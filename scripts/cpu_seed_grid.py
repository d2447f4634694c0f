#!/usr/bin/env python3
"""The CPU reproduction's small-CIFAR grid with its seed spread, as one resumable command.

    python scripts/cpu_seed_grid.py --root /data/cifar10 --results results/cpu-grid

Four groups, in this order (each a set of ordinary ``python main.py -m`` sweeps, so every run is
claimed, checkpointed and skipped once finished, and the same command can be started twice to
share the work between two processes, or again after a kill to resume):

  seed99    N = 45, 150, 450 x widths 8, 16, 32 x five rules x lr 1, 2, 5, seed 99   (135 runs)
  seeds     the same 45 cells at the lr the report chose on seed 99, seeds 100-103  (180 runs)
  w64       width 64 at the same N, five rules, lr 1, 2, 5, seed 99                  (45 runs)
  w64seeds  width 64 at its chosen lr, seeds 100-103                                 (60 runs)

The lr of a cell is the one ``walign-report`` picks for Table 9 on the seed-99 runs (its
``chosen_run``), so no selection ever looks at the seeds that measure the spread. A cell whose
seed-99 runs are not all finished yet (the other process is still on one) is retried until they
are. Each group's wall time is appended to ``<results>/grid-times.txt``.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (45, 150, 450)
RULES = ("align_ada", "align_zero", "dfa", "fa", "normal")
SEEDS = "100,101,102,103"


def sweep(args, *overrides: str) -> int:
    grid = ["sweeps=table9", f"dataset.root={args.root}", "dataset.verify_md5=false",
            "eval_test=false", f"results_dir={args.results}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.call([sys.executable, "main.py", "-m", *grid, *overrides], cwd=args.src, env=env)


def chosen_lrs(args, widths) -> dict[tuple[int, str, int], float]:
    """(N, rule, width) -> the lr of Table 9's chosen seed-99 run, for cells whose three seed-99
    runs have all finished, read from a report built in a scratch folder."""
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "walign.report", str(args.results), "--out", out],
                       cwd=args.src, check=True, stdout=subprocess.DEVNULL)
        rows = list(csv.DictReader(open(Path(out) / "table09_small_cifar10.csv")))
    lrs = {}
    for row in rows:
        key = (int(row["train_size"]), row["rule"], int(row["width"]))
        if key[0] not in SIZES or key[2] not in widths or not row["chosen_run"]:
            continue
        if int(row["candidate_runs"] or 0) < 3:          # a seed-99 lr still running
            continue
        name = Path(row["chosen_run"]).name               # w<width>-lr<lr>-s<seed>-<hash>
        lrs[key] = float(name.split("-")[1][2:])
    return lrs


def seed_group(args, widths) -> None:
    """Seeds 100-103 of every cell at its chosen lr; waits for cells still running on seed 99."""
    done: set = set()
    wanted = {(n, r, w) for n in SIZES for r in RULES for w in widths}
    while done != wanted:
        lrs = chosen_lrs(args, widths)
        ready = [key for key in sorted(wanted - done) if key in lrs]
        if not ready:
            time.sleep(60)
            continue
        for n, rule, width in ready:
            sweep(args, f"dataset.train_size={n}", f"rule={rule}", f"width={width}",
                  f"lr={lrs[(n, rule, width)]:g}", f"seed={SEEDS}")
            done.add((n, rule, width))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder holding cifar-10-batches-py")
    parser.add_argument("--results", required=True, help="results directory of the grid")
    parser.add_argument("--src", default=str(Path(__file__).resolve().parents[1]),
                        help="the walign checkout whose main.py runs the sweeps")
    parser.add_argument("--groups", default="seed99,seeds,w64,w64seeds")
    args = parser.parse_args()
    args.results = str(Path(args.results).resolve())
    small = ",".join(map(str, SIZES))
    groups = {
        "seed99": lambda: sweep(args, f"dataset.train_size={small}", "width=8,16,32"),
        "seeds": lambda: seed_group(args, (8, 16, 32)),
        "w64": lambda: sweep(args, f"dataset.train_size={small}", "width=64"),
        "w64seeds": lambda: seed_group(args, (64,)),
    }
    for name in args.groups.split(","):
        start = time.time()
        groups[name]()
        with open(Path(args.results) / "grid-times.txt", "a") as log:
            log.write(f"{name} pid={os.getpid()} host={os.uname().nodename} "
                      f"start={time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(start))} "
                      f"wall_s={time.time() - start:.0f}\n")


if __name__ == "__main__":
    main()
