#!/usr/bin/env python3
"""Which of the paper's Table 9 orderings hold seed by seed, and which cells sit far from the paper.

    python scripts/table9_orderings.py RESULTS_DIR

Reads the small-CIFAR runs under RESULTS_DIR the way walign-report does (walign.report), takes
each cell's values over seeds 99-103 at the lr chosen on seed 99 (protocol.seed_spread), and
prints Markdown for docs/results.md:

- for each ordering the paper's Table 9 suggests, at each N and width: in how many seeds it holds
  (strictly, comparing the rules' values of the same seed), and whether it holds in the paper;
- the mean gaps Align-ada minus Align-zero and Normal minus Align-ada per cell, beside the paper's;
- every cell whose paper value is more than 2 SD (sample SD over our seeds) from our mean.
"""
from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np

from walign.paper import METHOD_OF_RULE, table
from walign.report.collect import scan
from walign.report.protocol import seed_spread
from walign.report.tables import RULE_OF_METHOD, small_cifar_runs

RULES = ("normal", "align_ada", "align_zero", "fa", "dfa")
ORDERINGS = {  # name -> test on one seed's values {rule: accuracy}
    "Normal above all four other rules": lambda v: all(v["normal"] > v[r] for r in RULES if r != "normal"),
    "Align-ada above Align-zero": lambda v: v["align_ada"] > v["align_zero"],
    "Align-ada above Normal": lambda v: v["align_ada"] > v["normal"],
    "Align-ada above both FA and DFA": lambda v: v["align_ada"] > max(v["fa"], v["dfa"]),
}


def cells(results_dir: str):
    """{(N, width): {rule: SeedSpread}} and {(N, width, rule): paper value}, for every cell with runs."""
    runs = scan(results_dir).usable()
    paper = table(9)
    spreads, reference = {}, {}
    for p in paper.itertuples():
        rule = RULE_OF_METHOD[p.method]
        spread = seed_spread(small_cifar_runs(runs, SimpleNamespace(width=p.width, train_size=p.train_size), rule,
                                              seed=None))
        if spread.n:
            spreads.setdefault((int(p.train_size), int(p.width)), {})[rule] = spread
            reference[(int(p.train_size), int(p.width), rule)] = float(p.value)
    return {k: v for k, v in spreads.items() if len(v) == len(RULES)}, reference


def orderings(spreads, reference) -> list[str]:
    sizes, widths = sorted({n for n, _ in spreads}), sorted({w for _, w in spreads})
    out = []
    for name, holds in ORDERINGS.items():
        out += [f"**{name}**: seeds in which it holds / seeds run (paper: holds or not)", "",
                "| N | " + " | ".join(f"×{w}" for w in widths) + " |", "|---:|" + "---:|" * len(widths)]
        for n in sizes:
            row = []
            for w in widths:
                by_rule = spreads.get((n, w))
                if by_rule is None:
                    row.append("—")
                    continue
                seeds = sorted(set.intersection(*(set(s.values) for s in by_rule.values())))
                held = sum(holds({r: by_rule[r].values[s] for r in RULES}) for s in seeds)
                paper = "yes" if holds({r: reference[(n, w, r)] for r in RULES}) else "no"
                row.append(f"{held}/{len(seeds)} ({paper})")
            out.append(f"| {n} | " + " | ".join(row) + " |")
        out.append("")
    for first, second in (("align_ada", "align_zero"), ("normal", "align_ada")):
        out += gap(spreads, reference, first, second, sizes, widths)
    return out


def gap(spreads, reference, first: str, second: str, sizes, widths) -> list[str]:
    """The mean-over-seeds difference of two rules per cell, beside the paper's."""
    out = [f"**{METHOD_OF_RULE[first]} minus {METHOD_OF_RULE[second]}**, mean over seeds (points), ours / paper:", "",
           "| N | " + " | ".join(f"×{w}" for w in widths) + " |", "|---:|" + "---:|" * len(widths)]
    for n in sizes:
        row = []
        for w in widths:
            ours = spreads[(n, w)][first].mean - spreads[(n, w)][second].mean
            row.append(f"{ours:+.1f} / {reference[(n, w, first)] - reference[(n, w, second)]:+.1f}")
        out.append(f"| {n} | " + " | ".join(row) + " |")
    return out + [""]


def far_cells(spreads, reference) -> list[str]:
    out = ["Cells whose paper value is more than 2 SD from our mean over seeds:", "",
           "| N | width | rule | our mean ± SD (n) | our seeds' range | paper | (paper − mean) / SD |",
           "|---:|---:|---|---|---|---:|---:|"]
    for (n, w), by_rule in sorted(spreads.items()):
        for rule in RULES:
            s = by_rule[rule]
            if s.sd is None or s.sd == 0:
                continue
            z = (reference[(n, w, rule)] - s.mean) / s.sd
            if abs(z) > 2:
                out.append(f"| {n} | {w} | {METHOD_OF_RULE[rule]} | {s.mean:.1f} ± {s.sd:.1f} ({s.n}) | "
                           f"{min(s.values.values()):.1f}-{max(s.values.values()):.1f} | "
                           f"{reference[(n, w, rule)]:.1f} | {z:+.1f} |")
    zs = [(reference[(n, w, r)] - s.mean) / s.sd for (n, w), b in spreads.items() for r, s in b.items() if s.sd]
    out += ["", f"Over all {len(zs)} cells: mean (paper − mean) / SD {np.mean(zs):+.2f}; "
                f"{sum(z > 0 for z in zs)} cells have the paper above our mean."]
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    spreads, reference = cells(argv[0])
    if not spreads:
        print(f"no Table 9 cell under {argv[0]} has runs of all five rules", file=sys.stderr)
        return 1
    print("\n".join(orderings(spreads, reference) + far_cells(spreads, reference)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
