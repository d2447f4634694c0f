"""Runs on networks beyond the paper's (``arch=resnet20``, ``arch=mlp``, a plugin's): one table of
test error per rule, beside the errors biotorch publishes for the same network where it has them.

The paper's tables read only runs on the paper's own networks; these runs would otherwise show up
only as unused variants. A row is one (data set, network with its options, width, epochs, scale);
a cell is the rule's test error at the epoch of best validation accuracy, averaged over seeds, at
the learning rate whose mean best validation accuracy is highest (the paper tables' protocol),
with the number of seeds. The table is written only when such runs exist, so a report of the
paper's runs alone is unchanged.
"""
from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pandas as pd

from ..runs import write_atomic

PAPER_NETWORKS = ("auto", "cifar", "kmnist", "imagenet", "add_rnn")
FILE = "networks_beyond_the_paper"
ROW = ["dataset", "network", "width", "epochs", "scale"]


def published() -> pd.DataFrame:
    """biotorch's CIFAR-10 errors (walign/paper/biotorch_cifar10.csv)."""
    with resources.files("walign.paper").joinpath("biotorch_cifar10.csv").open() as f:
        return pd.read_csv(f)


def network_of(summary: dict) -> str:
    """'resnet20 depth=56': the architecture and its options, as a run's summary names them."""
    options = " ".join(f"{k[5:]}={summary[k]}" for k in sorted(summary) if k.startswith("arch_"))
    return f"{summary.get('arch', 'auto')}{' ' + options if options else ''}"


def cells(filling: pd.DataFrame) -> pd.DataFrame:
    """One row per (network row, rule): test error (%), its seeds, the chosen lr and the runs read."""
    runs = filling[~filling["arch"].isin(PAPER_NETWORKS)]
    out = []
    for key, group in runs.groupby(ROW + ["rule"], sort=True):
        by_lr = group.groupby("lr")["best_val_acc"].mean()
        lr = float(by_lr.idxmax()) if by_lr.notna().any() else float(group["lr"].iloc[0])
        chosen = group[group["lr"] == lr]
        test = chosen["test_acc_at_best_val"].dropna()
        error = 100 * (1 - test.mean()) if len(test) else math.nan
        out.append(dict(zip(ROW + ["rule"], key), error=error, seeds=len(chosen), lr=lr,
                        runs=sorted(chosen["path"])))
    return pd.DataFrame(out, columns=ROW + ["rule", "error", "seeds", "lr", "runs"])


def _biotorch(row: pd.Series, rule: str, theirs: pd.DataFrame) -> float | None:
    if row["dataset"] != "cifar10":
        return None
    name, _, options = row["network"].partition(" ")
    depth = dict(o.split("=", 1) for o in options.split() if "=" in o).get("depth")
    hit = theirs[(theirs["network"] == name) & (theirs["depth"].astype(str) == str(depth))
                 & (theirs["width"] == row["width"]) & (theirs["rule"] == rule)]
    return float(hit["top1_error"].iloc[0]) if len(hit) else None


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def write(found: pd.DataFrame, out: Path, scale: str) -> list[str]:
    """networks_beyond_the_paper.md and .csv; the file names ([] when there are no such runs)."""
    if found.empty:
        return []
    theirs = published()
    rules = sorted(found["rule"].unique())
    lines = [f"# Networks beyond the paper: test error (%){' (' + scale + ' scale)' if scale != 'full' else ''}", "",
             "Each cell: ours [seeds, lr] / biotorch's published error where it has one (CIFAR-10, same network "
             "and width, SGD with its own recipe). Ours: test error at the epoch of best validation accuracy, "
             "mean over seeds, at the lr with the best mean validation accuracy.", "",
             "| " + " | ".join(ROW + rules) + " |", "|" + "---|" * len(ROW) + "---:|" * len(rules)]
    rows = []
    for key, group in found.groupby(ROW, sort=True):
        row = pd.Series(dict(zip(ROW, key)))
        cols = []
        for rule in rules:
            hit = group[group["rule"] == rule]
            ours = "" if hit.empty else ("n/a" if math.isnan(hit["error"].iloc[0]) else f"{hit['error'].iloc[0]:.2f}") \
                + f" [{int(hit['seeds'].iloc[0])}, {hit['lr'].iloc[0]:g}]"
            ref = _biotorch(row, rule, theirs)
            cols.append(" / ".join(x for x in (ours or "—", f"{ref:g}" if ref is not None else "") if x))
            if not hit.empty:
                rows.append({**row.to_dict(), "rule": rule, "error": hit["error"].iloc[0],
                             "seeds": int(hit["seeds"].iloc[0]), "lr": hit["lr"].iloc[0], "biotorch_error": ref,
                             "runs": ";".join(hit["runs"].iloc[0])})
        lines.append("| " + " | ".join(_text(v) for v in key) + " | " + " | ".join(cols) + " |")
    write_atomic(out / f"{FILE}.md", "\n".join(lines) + "\n")
    write_atomic(out / f"{FILE}.csv", pd.DataFrame(rows).to_csv(index=False))
    return [f"{FILE}.md", f"{FILE}.csv"]


def section(found: pd.DataFrame, names: list[str]) -> list[str]:
    """REPORT.md's section (none when there are no such runs)."""
    if not names:
        return []
    networks = sorted(found["network"].unique())
    links = " · ".join(f"[{n.rsplit('.', 1)[1]}]({n})" for n in names)
    return ["## Networks beyond the paper", "",
            f"Runs on {', '.join(f'`{n}`' for n in networks)}: test error per rule, beside biotorch's published "
            f"errors where it has them ({links}).", ""]


def runs_read(found: pd.DataFrame) -> set[str]:
    return {path for paths in found["runs"] for path in paths}
