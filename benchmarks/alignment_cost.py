#!/usr/bin/env python3
"""What one alignment scoring costs next to one training epoch of the paired GD + W* run.

    python benchmarks/alignment_cost.py --width 64 [--device cpu] [--iterations 5]

The epoch is the default CIFAR-10 schedule: 450 steps of batch 100 with the gd_wstar rule, timed
over a few steps and scaled up. The scoring is every conv layer with the released estimator (and,
with --permuted, the permuted baseline), timed with ``--iterations`` probe batches and scaled linearly to the
default 100 (its cost is linear in the iterations).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from step_time import machine, make, step  # noqa: E402


def clock(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=5, help="probe batches timed (scaled to 100)")
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--permuted", action="store_true", help="also score the permuted baseline")
    args = ap.parse_args()
    device = torch.device(args.device)
    rule, opt, x, y = make("gd_wstar", args.width, device, 100)
    rule.iterations, rule.probes, rule.permuted_baseline = args.iterations, args.probes, args.permuted
    step(rule, opt, x, y)  # warm-up
    start = clock(device)
    for _ in range(args.steps):
        step(rule, opt, x, y)
    epoch = (clock(device) - start) / args.steps * 450
    start = clock(device)
    rule.scores()
    scoring = (clock(device) - start) * 100 / args.iterations
    print(f"# machine: {machine(device)}; torch {torch.__version__}; width {args.width}")
    print(f"training epoch (450 steps of 100, GD + W*): {epoch:.1f} s")
    extra = " and the permuted baseline" if args.permuted else ""
    print(f"one scoring, 7 layers x 100 x {args.probes} probes{extra}: {scoring:.1f} s")
    print(f"scoring / epoch: {100 * scoring / epoch:.1f} %")
    # what that is in a run: the default schedule scores once, after the last epoch (Tables 3-5);
    # Figure 8 scores after every epoch
    for label, epochs, scorings in (("Table 3 schedule (150 epochs, scored once)", 150, 1),
                                    ("Table 4/5 schedule (100 epochs, scored once)", 100, 1),
                                    ("Figure 8 schedule (300 epochs, scored every epoch)", 300, 300)):
        share = scorings * scoring / (epochs * epoch + scorings * scoring)
        print(f"{label}: scoring is {100 * share:.2f} % of the run's wall time")


if __name__ == "__main__":
    main()
