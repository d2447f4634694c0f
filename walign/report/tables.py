"""Tables 1-10: one cell per number the paper printed, ours beside it.

The paper's own CSV (walign.paper) defines the grid of every table, so a table always has the
paper's rows and columns, filled or not. Each cell is computed by the selection protocol in
``protocol.py``; this module only decides which protocol applies to which paper row, and writes
the result three ways:

* CSV: long format, one row per cell, numeric columns ours / paper / difference (for scripts);
* Markdown and LaTeX: the paper's layout, each cell reading ``ours / paper (ours - paper)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import paper
from .protocol import (ALIGNMENT, ALIGNMENT_RULE, LR_ADAM, LR_GRID, SMALL_LR, Cell, best_accuracy,
                       candidates, epoch1_accuracy, lr_in, alignment_cell, min_loss, seed_statistics)

RULE_OF_METHOD = {method: rule for rule, method in paper.METHOD_OF_RULE.items()}
DIGITS = {"percent": 1, "unitless cosine": 3, "loss": 3, "count": 0}
DIVERGED, NOTED, MISSING = "†", "‡", "—"


@dataclass(frozen=True)
class TableSpec:
    number: int
    stem: str                       # file name without extension
    title: str
    protocol: str                   # how our number is chosen, in one sentence
    row_names: tuple[str, ...]
    datasets: tuple[str, ...]       # the data sets it reads (to mention substitutions)


TABLES = (
    TableSpec(1, "table01_alignprop_cifar10", "CIFAR-10 accuracy with Align-prop (%)",
              "best validation accuracy over epochs, then over lr in {1, 2, 5}; seed 99", ("Method",), ("cifar10",)),
    TableSpec(2, "table02_seeds_cifar10", "CIFAR-10 accuracy at width 256 over seeds 100-104 (%)",
              "per seed the best over epochs and lr in {1, 2, 5}; mean and std over the seeds found. "
              "The paper's std is compared with the population std (ddof 0, numpy's default); "
              "the sample std (ddof 1) is shown beside it", ("Method",), ("cifar10",)),
    TableSpec(3, "table03_alignment_cifar10_relu", "Alignment scores, ReLU CNN on CIFAR-10",
              "operator score (released estimator) of the alignment run at epoch 150, lr 5 preferred",
              ("Layer",), ("cifar10",)),
    TableSpec(4, "table04_alignment_kmnist_relu", "Alignment scores, KMNIST",
              "operator score (released estimator) of the alignment run at epoch 100, lr 5 preferred",
              ("Layer",), ("kmnist",)),
    TableSpec(5, "table05_alignment_cifar10_tanh", "Alignment scores, tanh CNN on CIFAR-10",
              "operator score (released estimator) of the tanh alignment run at epoch 100, lr 2 preferred",
              ("Layer",), ("cifar10",)),
    TableSpec(6, "table06_width_cifar10", "CIFAR-10 accuracy vs width (%)",
              "best validation accuracy over epochs, then over lr in {1, 2, 5}; seed 99", ("Method",), ("cifar10",)),
    TableSpec(7, "table07_width_kmnist", "KMNIST accuracy vs width (%)",
              "best validation accuracy over epochs, then over lr in {1, 2, 5}; seed 99", ("Method",), ("kmnist",)),
    TableSpec(8, "table08_rnn_add_task", "Add-task RNN, minimum loss vs hidden units",
              "minimum over epochs of the train and test loss (summary.json), lowest over lr; seed 99",
              ("Method", "Loss"), ("add",)),
    TableSpec(9, "table09_small_cifar10", "Small CIFAR-10 accuracy vs training-set size and width (%)",
              "best validation accuracy over epochs, then over lr in {1, 2, 5}; seed 99; "
              "N = 45000 also takes full CIFAR-10 runs", ("Training data", "Method"), ("small_cifar10", "cifar10")),
    TableSpec(10, "table10_standard_param_adam_cifar10", "CIFAR-10, standard parameterization + Adam (%)",
              "150 epochs: best over epochs and the 10-value lr grid; 1 epoch: epoch-1 accuracy, best "
              "over the grid; 1 epoch + small lr: epoch-1 accuracy at lr 0.0005", ("Setting", "Method"), ("cifar10",)),
)
TABLE_BY_NUMBER = {spec.number: spec for spec in TABLES}
TABLE10_SETTINGS = {"sp_adam_150ep": "150 epochs", "sp_adam_1ep": "1 epoch",
                    "sp_adam_1ep_lr0.0005": "1 epoch + small lr"}


def width_label(width) -> str:
    return f"×{int(width)}"


# ----------------------------------------------------------------------------- ours, per paper row
def _accuracy_cell(runs, dataset, p) -> Cell:
    return best_accuracy(candidates(runs, dataset=dataset, rule=RULE_OF_METHOD[p.method], width=int(p.width), lrs=LR_GRID))


def _small_cifar_cell(runs, p) -> Cell:
    rule, width, size = RULE_OF_METHOD[p.method], int(p.width), int(p.train_size)
    found = candidates(runs, dataset="small_cifar10", rule=rule, width=width, train_size=size, lrs=LR_GRID)
    if size == 45000:  # the full training split: a plain CIFAR-10 run is the same experiment
        found = pd.concat([found, candidates(runs, dataset="cifar10", rule=rule, width=width, lrs=LR_GRID)])
    return best_accuracy(found)


def _table10_cell(runs, p) -> Cell:
    found = candidates(runs, dataset="cifar10", rule=RULE_OF_METHOD[p.method], width=int(p.width),
                       parameterization="standard", optimizer="adam")
    if p.setting == "sp_adam_150ep":
        return best_accuracy(found[lr_in(found["lr"], LR_ADAM)])
    if p.setting == "sp_adam_1ep":
        return epoch1_accuracy(found[lr_in(found["lr"], LR_ADAM)])
    return epoch1_accuracy(found[lr_in(found["lr"], (SMALL_LR,))])


def _alignment_cell(runs, number, p) -> Cell:
    dataset, activation, epoch, lr = ALIGNMENT[number]
    found = candidates(runs, dataset=dataset, rule=ALIGNMENT_RULE, width=int(p.width), activation=activation)
    return alignment_cell(found, int(p.layer), epoch, lr)


def _ours(number: int, runs: pd.DataFrame, p) -> Cell:
    if number in (1, 6):
        return _accuracy_cell(runs, "cifar10", p)
    if number == 7:
        return _accuracy_cell(runs, "kmnist", p)
    if number == 9:
        return _small_cifar_cell(runs, p)
    if number == 10:
        return _table10_cell(runs, p)
    if number in ALIGNMENT:
        return _alignment_cell(runs, number, p)
    if number == 8:
        which = "train" if p.metric == "train_loss_best" else "test"
        return min_loss(candidates(runs, dataset="add", rule=RULE_OF_METHOD[p.method], width=int(p.width)), which)
    raise ValueError(f"no protocol for table {number}")


def _labels(number: int, p) -> tuple[tuple, str]:
    """(row labels, column label) of a paper row in the paper's layout."""
    if number == 2:
        return (p.method,), {"test_acc_mean_over_seeds": "mean", "test_acc_std_over_seeds": "std"}[p.metric]
    if number in ALIGNMENT:
        return (f"Layer {int(p.layer)}",), width_label(p.width)
    if number == 8:
        return (p.method, "train" if p.metric == "train_loss_best" else "test"), width_label(p.width)
    if number == 9:
        return (str(int(p.train_size)), p.method), width_label(p.width)
    if number == 10:
        return (TABLE10_SETTINGS[p.setting], p.method), width_label(p.width)
    return (p.method,), width_label(p.width)


def _record(number, p, cell: Cell, row, col, counted=True, metric=None, unit=None) -> dict:
    value = None if cell.ours is None else float(cell.ours)
    reference = float(p.value) if counted else math.nan
    rule = ALIGNMENT_RULE if number in ALIGNMENT else RULE_OF_METHOD.get(p.method, "")
    status = "missing" if value is None else ("diverged" if cell.diverged else "ok")
    return {"table": number, "setting": p.setting, "method": p.method, "rule": rule,
            "width": p.width, "train_size": p.train_size, "layer": p.layer,
            "metric": metric or p.metric, "unit": unit or p.unit, "ours": value, "paper": reference,
            "difference": (value - reference) if value is not None and counted else math.nan,
            "status": status, "note": cell.note, "chosen_run": cell.chosen, "candidate_runs": len(cell.considered),
            "counted": counted, "row": row, "col": col, "considered": cell.considered}


def build(number: int, runs: pd.DataFrame) -> pd.DataFrame:
    """All cells of table ``number`` (long format), computed from the usable ``runs``."""
    reference = paper.table(number)
    records = []
    if number == 2:  # one seed study per method gives its mean, std, and the extra columns
        for method, rows in reference.groupby("method", sort=False):
            stats = seed_statistics(runs, dataset="cifar10", rule=RULE_OF_METHOD[method], width=256, lrs=LR_GRID)
            for p in rows.itertuples():
                row, col = _labels(2, p)
                records.append(_record(2, p, stats[col], row, col))
            p = rows.iloc[0]
            records.append(_record(2, p, stats["sample_std"], (method,), "std (sample)", False,
                                   "test_acc_sample_std_over_seeds", "percent"))
            records.append(_record(2, p, stats["seeds"], (method,), "seeds", False, "seeds_found", "count"))
    else:
        for p in reference.itertuples():
            row, col = _labels(number, p)
            records.append(_record(number, p, _ours(number, runs, p), row, col))
    return pd.DataFrame(records)


# ----------------------------------------------------------------------------- rendering
def _fmt(value, digits: int, signed: bool = False) -> str:
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def cell_text(cell: pd.Series) -> str:
    """'ours[marks] / paper (difference)'; '— / paper' when we have no run."""
    digits = DIGITS.get(cell["unit"], 3)
    has_paper = not (isinstance(cell["paper"], float) and math.isnan(cell["paper"]))
    marks = (DIVERGED if cell["status"] == "diverged" else "") + (NOTED if cell["note"] else "")
    ours = MISSING if cell["ours"] is None or pd.isna(cell["ours"]) else _fmt(cell["ours"], digits) + marks
    if not has_paper:
        return ours
    text = f"{ours} / {_fmt(cell['paper'], digits)}"
    if cell["status"] != "missing":
        text += f" ({_fmt(cell['difference'], digits, signed=True)})"
    return text


def wide(cells: pd.DataFrame, spec: TableSpec) -> tuple[list[str], list[list[str]]]:
    """Header and body rows in the paper's layout (row labels, then one column per width/metric)."""
    rows = list(dict.fromkeys(cells["row"]))
    cols = list(dict.fromkeys(cells["col"]))
    texts = {(c["row"], c["col"]): cell_text(c) for _, c in cells.iterrows()}
    body = [list(row) + [texts.get((row, col), "") for col in cols] for row in rows]
    return list(spec.row_names) + cols, body


def counts(cells: pd.DataFrame) -> dict[str, int]:
    counted = cells[cells["counted"]]
    return {"cells": len(counted), "filled": int((counted["status"] != "missing").sum()),
            "missing": int((counted["status"] == "missing").sum()),
            "diverged": int((counted["status"] == "diverged").sum())}


def missing_by_row(cells: pd.DataFrame) -> list[str]:
    """'Align-ada: ×8, ×16' per row that has missing cells."""
    lines = []
    missing = cells[cells["counted"] & (cells["status"] == "missing")]
    for row in dict.fromkeys(missing["row"]):
        cols = missing[missing["row"].apply(lambda r: r == row)]["col"]
        lines.append(f"{', '.join(row)}: {', '.join(cols)}")
    return lines


def notes(cells: pd.DataFrame) -> list[str]:
    noted = cells[cells["note"] != ""]
    return [f"{', '.join(c['row'])}, {c['col']}: {c['note']}" for _, c in noted.iterrows()]


def markdown_table(header: list[str], body: list[list[str]], label_columns: int) -> str:
    align = ["---"] * label_columns + ["---:"] * (len(header) - label_columns)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


def to_markdown(cells: pd.DataFrame, spec: TableSpec, substitutions: dict[str, str]) -> str:
    header, body = wide(cells, spec)
    n = counts(cells)
    out = [f"# Table {spec.number}: {spec.title}", "",
           f"Each cell reads *ours / paper (ours - paper)*. Ours: {spec.protocol}.",
           f"{DIVERGED} the run diverged (its best value before diverging is shown); "
           f"{NOTED} see the notes below; {MISSING} no run.", ""]
    for dataset in spec.datasets:
        if dataset in substitutions:
            out += [f"**Substitution:** `{substitutions[dataset]}` runs stand in for `{dataset}`; "
                    f"their numbers are not the paper's setting.", ""]
    out += [markdown_table(header, body, len(spec.row_names)), "",
            f"Filled {n['filled']} of {n['cells']} cells; missing {n['missing']}; diverged {n['diverged']}."]
    if notes(cells):
        out += ["", "## Notes", ""] + [f"- {line}" for line in notes(cells)]
    if missing_by_row(cells):
        out += ["", "## Missing cells", ""] + [f"- {line}" for line in missing_by_row(cells)]
    return "\n".join(out) + "\n"


def _latex_escape(text: str) -> str:
    for plain, latex in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                         ("#", r"\#"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(plain, latex)
    return (text.replace(DIVERGED, r"$^\dagger$").replace(NOTED, r"$^\ddagger$")
            .replace(MISSING, "--").replace("×", r"$\times$"))


def to_latex(cells: pd.DataFrame, spec: TableSpec) -> str:
    header, body = wide(cells, spec)
    columns = "l" * len(spec.row_names) + "r" * (len(header) - len(spec.row_names))
    lines = [f"% Table {spec.number}: {spec.title}. Cells: ours / paper (ours - paper).",
             r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{_latex_escape(spec.title)}. Each cell: ours / paper (ours $-$ paper); "
             r"$^\dagger$ diverged run; $^\ddagger$ see notes; -- no run.}",
             rf"\begin{{tabular}}{{{columns}}}", r"\toprule",
             " & ".join(_latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_escape(c) for c in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ["table", "setting", "method", "rule", "width", "train_size", "layer", "metric", "unit",
               "ours", "paper", "difference", "status", "note", "chosen_run", "candidate_runs"]


def to_csv(cells: pd.DataFrame) -> str:
    return cells[cells["counted"] | cells["ours"].notna()][CSV_COLUMNS].to_csv(
        index=False, float_format="%.10g", lineterminator="\n")


def write(cells: pd.DataFrame, spec: TableSpec, out: Path, substitutions: dict[str, str]) -> list[str]:
    """Write the three files; return their names."""
    names = [f"{spec.stem}.md", f"{spec.stem}.csv", f"{spec.stem}.tex"]
    (out / names[0]).write_text(to_markdown(cells, spec, substitutions))
    (out / names[1]).write_text(to_csv(cells))
    (out / names[2]).write_text(to_latex(cells, spec))
    return names
