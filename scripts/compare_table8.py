#!/usr/bin/env python3
"""Print Table 8 (Add-task RNN) from a results directory beside the paper's values.

    python scripts/compare_table8.py RESULTS_DIR [WIDTH ...]

Reads every add/*/*/summary.json under RESULTS_DIR and prints, per rule and width, our minimum
train and test losses, the paper's, the difference, and the run's wall time.
"""
import json
import sys
from pathlib import Path

from walign.paper import METHOD_OF_RULE, table


def main(results, widths=None):
    paper = table(8)
    rows = []
    for path in sorted(Path(results).glob("add/*/*/summary.json")):
        s = json.loads(path.read_text())
        if s.get("generator") != "faithful" or s.get("epochs") != 500 or (widths and s["width"] not in widths):
            continue
        for split in ("train", "test"):
            ref = paper[(paper.method == METHOD_OF_RULE[s["rule"]]) & (paper.width == s["width"])
                        & (paper.metric == f"{split}_loss_best")].value
            ours = s[f"min_{split}_loss"]
            want = float(ref.iloc[0]) if len(ref) else None
            diff = None if ours is None or want is None else round(ours, 3) - want
            rows.append((s["rule"], s["width"], split, ours, s[f"min_{split}_epoch"], want, diff,
                         s["status"], s["wall_seconds"]))
    print("| rule | width | loss | ours | epoch of min | paper | ours (3 dp) - paper | status | wall s |")
    print("|---|---:|---|---:|---:|---:|---:|---|---:|")
    for rule, width, split, ours, epoch, want, diff, status, wall in sorted(rows, key=lambda r: (r[1], r[0], r[2])):
        fmt = lambda v, p=4: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
        print(f"| {rule} | {width} | {split} | {fmt(ours)} | {epoch} | {fmt(want, 3)} | {fmt(diff, 3)} | {status} | {wall:.0f} |")
    matched = sum(1 for r in rows if r[6] is not None and abs(r[6]) < 5e-4)
    print(f"\n{matched} of {len(rows)} values equal the paper's to 3 decimals; "
          f"largest difference {max((abs(r[6]) for r in rows if r[6] is not None), default=0):.3f}")


if __name__ == "__main__":
    main(sys.argv[1], [int(w) for w in sys.argv[2:]] or None)
