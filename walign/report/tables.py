"""Tables 1-10: one cell per number the paper printed, ours beside it.

The paper's own CSV (walign.paper) defines the grid of every table, so a table always has the
paper's rows and columns, filled or not. Each table is one ``TableSpec`` in ``TABLES``: besides its
number, file stem, title and protocol text, the spec carries how our cell for a paper row is
computed (``ours``, from the selection protocol in ``protocol.py``), how that row is labelled in the
paper's layout (``labels``), which rule a row is about, and any table-specific way of building its
records (Table 2's seed study). Adding a table means adding one spec here.

Tables whose rows are methods also get rows for rules beyond the paper's (a user's own rule, found
in the runs), computed by the same protocol over the same columns, with no paper value.

Each table is written three ways:

* CSV: long format, one row per cell, numeric columns ours / paper / difference (for scripts);
* Markdown and LaTeX: the paper's layout, each cell reading ``ours / paper (ours - paper)``.

A report built from smoke-scale runs (``collect.Collection.scale``) says so in every table: the
title of the Markdown and of the LaTeX caption ends with ``scale_label``'s words, the Markdown
says why under the title, and the CSV, which has no title, gets a ``scale`` column. At full scale
nothing of this is written, so a full-scale table is exactly what it was before scales existed.

A table whose spec has a ``spread`` (Table 9) also computes, per cell, the mean, sample SD and
number of seeds at the lr chosen on seed 99 (``protocol.seed_spread``). They are shown (extra CSV
columns, ``[mean ± SD, n=...]`` in the cells, a protocol paragraph) only when some cell of the
table has more than one seed; otherwise the files are exactly what they were without seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .. import paper
from ..runs import write_atomic
from .collect import FULL_SCALE
from .protocol import (ALIGNMENT, ALIGNMENT_RULE, LR_ADAM, LR_GRID, PAPER_SEED, SEEDS_TABLE9, SMALL_LR, Cell,
                       SeedSpread, best_accuracy, candidates, epoch1_accuracy, lr_in, alignment_cell, min_loss,
                       seed_spread, seed_statistics)

RULE_OF_METHOD = {method: rule for rule, method in paper.METHOD_OF_RULE.items()}
PAPER_RULES = frozenset(paper.METHOD_OF_RULE) | {ALIGNMENT_RULE}   # every other rule is beyond the paper
DIGITS = {"percent": 1, "unitless cosine": 3, "loss": 3, "count": 0}
DIVERGED, NOTED, MISSING = "†", "‡", "—"
TABLE10_SETTINGS = {"sp_adam_150ep": "150 epochs", "sp_adam_1ep": "1 epoch",
                    "sp_adam_1ep_lr0.0005": "1 epoch + small lr"}
ACCURACY_PROTOCOL = "best validation accuracy over epochs, then over lr in {1, 2, 5}; seed 99"
SPREAD_COLUMNS = ["seed_mean", "seed_sd", "seed_n"]      # CSV columns of a table with a seed spread
SPREAD_PROTOCOL = (
    "Where a cell has runs of more than one seed, it also reads *[mean ± SD, n=...]* over seeds "
    f"{', '.join(map(str, SEEDS_TABLE9))} (CSV columns {', '.join(SPREAD_COLUMNS)}). The lr is the one "
    "that gave the cell's own value, chosen on seed 99 alone: no choice ever looks at the other seeds. "
    "Per seed, the value is its best validation accuracy over epochs at that lr, so seed 99 counts with "
    "the cell's own value. SD is the sample standard deviation (ddof = 1); n counts the seeds with a run "
    "at that lr; a diverged run counts with its best value before diverging (the cell says how many did). "
    "Runs of seeds 100-103 at any other lr are ignored.")
LATEX_SPREAD = r" [mean $\pm$ SD, n]: over seeds 99--103 at the lr chosen on seed 99 (SD with ddof 1)."
# what a table says under its title when the report is built from smoke runs (walign.scale: the only other scale)
SCALE_NOTE = ("**{scale} scale:** every number of ours comes from rehearsal runs on a few hundred examples per "
              "split and one or two epochs, chosen by the same protocol. They check that the pipeline runs end "
              "to end; their differences from the paper measure nothing.")


def scale_label(scale: str) -> str:
    """'smoke scale: not comparable with the paper' for a report not built from full-scale runs, else ''.
    The same words go into every table, figure title and REPORT.md, so none can be read without them."""
    return "" if scale == FULL_SCALE else f"{scale} scale: not comparable with the paper"


def scale_title(title: str, scale: str) -> str:
    """A table's title, followed by the scale label in parentheses when there is one."""
    return f"{title} ({scale_label(scale)})" if scale_label(scale) else title


def width_label(width) -> str:
    return f"×{int(width)}"


# ----------------------------------------------------------------------------- ours, per paper row
# Each takes the usable runs, one paper row (or a row of a rule beyond the paper, same fields) and
# the rule that row is about, and returns our cell.
def accuracy_on(dataset: str):
    """Tables 1, 6, 7: best over epochs, then over the lr grid, at the row's width."""
    def ours(runs, p, rule) -> Cell:
        return best_accuracy(candidates(runs, dataset=dataset, rule=rule, width=int(p.width), lrs=LR_GRID))
    return ours


def small_cifar_runs(runs, p, rule, seed: int | None = PAPER_SEED) -> pd.DataFrame:
    """Table 9's candidates for one cell (``seed`` None: every seed)."""
    width, size = int(p.width), int(p.train_size)
    found = candidates(runs, dataset="small_cifar10", rule=rule, width=width, train_size=size, seed=seed,
                       lrs=LR_GRID)
    if size == 45000:  # the full training split: a plain CIFAR-10 run is the same experiment
        found = pd.concat([found, candidates(runs, dataset="cifar10", rule=rule, width=width, seed=seed,
                                             lrs=LR_GRID)])
    return found


def small_cifar_cell(runs, p, rule) -> Cell:
    return best_accuracy(small_cifar_runs(runs, p, rule))


def small_cifar_spread(runs, p, rule) -> SeedSpread:
    """Table 9's spread over seeds 99-103 at the lr chosen on seed 99 (``protocol.seed_spread``)."""
    return seed_spread(small_cifar_runs(runs, p, rule, seed=None))


def table10_cell(runs, p, rule) -> Cell:
    found = candidates(runs, dataset="cifar10", rule=rule, width=int(p.width),
                       parameterization="standard", optimizer="adam")
    if p.setting == "sp_adam_150ep":
        return best_accuracy(found[lr_in(found["lr"], LR_ADAM)])
    if p.setting == "sp_adam_1ep":
        return epoch1_accuracy(found[lr_in(found["lr"], LR_ADAM)])
    return epoch1_accuracy(found[lr_in(found["lr"], (SMALL_LR,))])


def alignment_of(number: int):
    """Tables 3-5: the layer's score of the alignment run at the table's epoch and lr."""
    dataset, activation, epoch, lr = ALIGNMENT[number]
    def ours(runs, p, rule) -> Cell:
        found = candidates(runs, dataset=dataset, rule=rule, width=int(p.width), activation=activation)
        return alignment_cell(found, int(p.layer), epoch, lr)
    return ours


def _loss_kind(p) -> str:
    return "train" if p.metric == "train_loss_best" else "test"


def add_task_cell(runs, p, rule) -> Cell:
    return min_loss(candidates(runs, dataset="add", rule=rule, width=int(p.width)), _loss_kind(p))


# ----------------------------------------------------------------------------- labels, per paper row
# (row labels, column label) of a row in the paper's layout
def by_method(p):
    return (p.method,), width_label(p.width)


def by_layer(p):
    return (f"Layer {int(p.layer)}",), width_label(p.width)


def by_method_and_loss(p):
    return (p.method, _loss_kind(p)), width_label(p.width)


def by_size_and_method(p):
    return (str(int(p.train_size)), p.method), width_label(p.width)


def by_setting_and_method(p):
    return (TABLE10_SETTINGS[p.setting], p.method), width_label(p.width)


def by_seed_statistic(p):
    return (p.method,), {"test_acc_mean_over_seeds": "mean", "test_acc_std_over_seeds": "std"}[p.metric]


def rule_of_method(p) -> str:
    return RULE_OF_METHOD.get(p.method, "")


def alignment_rule(p) -> str:
    return ALIGNMENT_RULE


# ----------------------------------------------------------------------------- the specs
@dataclass(frozen=True)
class TableSpec:
    number: int
    stem: str                       # file name without extension
    title: str
    protocol: str                   # how our number is chosen, in one sentence
    row_names: tuple[str, ...]
    datasets: tuple[str, ...]       # the data sets it reads (to mention substitutions, find extra rules)
    ours: Callable                  # (runs, paper row, rule) -> Cell
    labels: Callable                # paper row -> (row labels, column label)
    rule_of: Callable = rule_of_method          # paper row -> the rule it is about
    records: Callable | None = None             # (spec, paper rows, runs) -> records, replacing one per row
    extra_rules: bool = False                   # rows for rules beyond the paper's, found in the runs
    spread: Callable | None = None              # (runs, paper row, rule) -> SeedSpread, beside each cell


def seed_study(spec: "TableSpec", reference: pd.DataFrame, runs: pd.DataFrame) -> list[dict]:
    """Table 2: one seed study per method gives its mean, std, and two extra columns (the sample
    std and the number of seeds found) that the paper did not print."""
    records = []
    for method, rows in reference.groupby("method", sort=False):
        rule = RULE_OF_METHOD[method]
        stats = seed_statistics(runs, dataset="cifar10", rule=rule, width=256, lrs=LR_GRID)
        for p in rows.itertuples():
            row, col = spec.labels(p)
            records.append(record(spec, p, rule, stats[col], row, col))
        p = rows.iloc[0]
        records.append(record(spec, p, rule, stats["sample_std"], (method,), "std (sample)", counted=False,
                              metric="test_acc_sample_std_over_seeds", unit="percent"))
        records.append(record(spec, p, rule, stats["seeds"], (method,), "seeds", counted=False,
                              metric="seeds_found", unit="count"))
    return records


TABLES = (
    TableSpec(1, "table01_alignprop_cifar10", "CIFAR-10 accuracy with Align-prop (%)", ACCURACY_PROTOCOL,
              ("Method",), ("cifar10",), accuracy_on("cifar10"), by_method, extra_rules=True),
    TableSpec(2, "table02_seeds_cifar10", "CIFAR-10 accuracy at width 256 over seeds 100-104 (%)",
              "per seed the best over epochs and lr in {1, 2, 5}; mean and std over the seeds found. "
              "The paper's std is compared with the population std (ddof 0, numpy's default); "
              "the sample std (ddof 1) is shown beside it", ("Method",), ("cifar10",),
              None, by_seed_statistic, records=seed_study),   # no per-row cell: seed_study builds all
    TableSpec(3, "table03_alignment_cifar10_relu", "Alignment scores, ReLU CNN on CIFAR-10",
              "operator score (released estimator) of the alignment run at epoch 150, lr 5 preferred",
              ("Layer",), ("cifar10",), alignment_of(3), by_layer, alignment_rule),
    TableSpec(4, "table04_alignment_kmnist_relu", "Alignment scores, KMNIST",
              "operator score (released estimator) of the alignment run at epoch 100, lr 5 preferred",
              ("Layer",), ("kmnist",), alignment_of(4), by_layer, alignment_rule),
    TableSpec(5, "table05_alignment_cifar10_tanh", "Alignment scores, tanh CNN on CIFAR-10",
              "operator score (released estimator) of the tanh alignment run at epoch 100, lr 2 preferred",
              ("Layer",), ("cifar10",), alignment_of(5), by_layer, alignment_rule),
    TableSpec(6, "table06_width_cifar10", "CIFAR-10 accuracy vs width (%)", ACCURACY_PROTOCOL,
              ("Method",), ("cifar10",), accuracy_on("cifar10"), by_method, extra_rules=True),
    TableSpec(7, "table07_width_kmnist", "KMNIST accuracy vs width (%)", ACCURACY_PROTOCOL,
              ("Method",), ("kmnist",), accuracy_on("kmnist"), by_method, extra_rules=True),
    TableSpec(8, "table08_rnn_add_task", "Add-task RNN, minimum loss vs hidden units",
              "minimum over epochs of the train and test loss (summary.json), lowest over lr; seed 99",
              ("Method", "Loss"), ("add",), add_task_cell, by_method_and_loss, extra_rules=True),
    TableSpec(9, "table09_small_cifar10", "Small CIFAR-10 accuracy vs training-set size and width (%)",
              f"{ACCURACY_PROTOCOL}; N = 45000 also takes full CIFAR-10 runs",
              ("Training data", "Method"), ("small_cifar10", "cifar10"), small_cifar_cell, by_size_and_method,
              extra_rules=True, spread=small_cifar_spread),
    TableSpec(10, "table10_standard_param_adam_cifar10", "CIFAR-10, standard parameterization + Adam (%)",
              "150 epochs: best over epochs and the 10-value lr grid; 1 epoch: epoch-1 accuracy, best "
              "over the grid; 1 epoch + small lr: epoch-1 accuracy at lr 0.0005", ("Setting", "Method"),
              ("cifar10",), table10_cell, by_setting_and_method),
)


# ----------------------------------------------------------------------------- building the cells
def record(spec: TableSpec, p, rule: str, cell: Cell, row, col, counted=True, metric=None, unit=None,
           extra=False) -> dict:
    """One cell in long format. ``counted``: a number the paper printed (counts as filled or
    missing); ``extra``: a row of a rule beyond the paper's (no paper value)."""
    value = None if cell.ours is None else float(cell.ours)
    reference = float(p.value) if counted else math.nan
    status = "missing" if value is None else ("diverged" if cell.diverged else "ok")
    return {"table": spec.number, "setting": p.setting, "method": p.method, "rule": rule,
            "width": p.width, "train_size": p.train_size, "layer": p.layer,
            "metric": metric or p.metric, "unit": unit or p.unit, "ours": value, "paper": reference,
            "difference": (value - reference) if value is not None and counted else math.nan,
            "status": status, "note": cell.note, "chosen_run": cell.chosen, "candidate_runs": len(cell.considered),
            "counted": counted, "extra": extra, "row": row, "col": col, "considered": cell.considered}


def spread_columns(spread: SeedSpread) -> dict:
    """A cell's seed spread as record columns (NaN where undefined: no seed, or one for the SD)."""
    return {"seed_mean": math.nan if spread.mean is None else spread.mean,
            "seed_sd": math.nan if spread.sd is None else spread.sd,
            "seed_n": spread.n, "seed_diverged": spread.diverged, "seed_runs": spread.runs}


def cell_record(spec: TableSpec, runs: pd.DataFrame, p, rule: str, **how) -> dict:
    """Our cell for paper row (or extra row) ``p`` in long format, with its seed spread if the
    table has one; ``how``: ``record``'s keywords."""
    row, col = spec.labels(p)
    found = record(spec, p, rule, spec.ours(runs, p, rule), row, col, **how)
    if spec.spread is not None:
        found.update(spread_columns(spec.spread(runs, p, rule)))
    return found


def runs_read(cells: pd.DataFrame) -> set[str]:
    """Every run some of ``cells`` read: the paper-protocol candidates and the seed-spread runs."""
    used = set()
    for column in ("considered", "seed_runs"):
        if column in cells.columns:
            for paths in cells[column]:
                if isinstance(paths, tuple):
                    used.update(paths)
    return used


def extra_rules(runs: pd.DataFrame, datasets) -> list[str]:
    """Rules beyond the paper's that have usable runs on any of ``datasets``, by name."""
    found = runs[runs["dataset"].isin(list(datasets)) & ~runs["rule"].isin(list(PAPER_RULES))]
    return sorted(set(found["rule"]))


def extra_rows(reference: pd.DataFrame, rule: str) -> pd.DataFrame:
    """The paper's columns (every distinct cell position of its rows) for one more method, ``rule``,
    which the paper did not print (value NaN)."""
    position = [c for c in reference.columns if c not in ("method", "value")]
    rows = reference.drop_duplicates(subset=position).copy()
    rows["method"], rows["value"] = rule, math.nan
    return rows


def extra_records(spec: TableSpec, reference: pd.DataFrame, runs: pd.DataFrame) -> list[dict]:
    """Rows for each rule beyond the paper's whose runs are candidates for at least one cell."""
    records = []
    for rule in extra_rules(runs, spec.datasets):
        rows = [cell_record(spec, runs, p, rule, counted=False, extra=True)
                for p in extra_rows(reference, rule).itertuples()]
        if any(r["considered"] for r in rows):
            records += rows
    return records


def build(spec: TableSpec, runs: pd.DataFrame) -> pd.DataFrame:
    """All cells of table ``spec`` (long format), computed from the usable ``runs``."""
    reference = paper.table(spec.number)
    if spec.records is not None:
        records = spec.records(spec, reference, runs)
    else:
        records = [cell_record(spec, runs, p, spec.rule_of(p)) for p in reference.itertuples()]
    if spec.extra_rules:
        records += extra_records(spec, reference, runs)
    return pd.DataFrame(records)


# ----------------------------------------------------------------------------- rendering
def _fmt(value, digits: int, signed: bool = False) -> str:
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def has_spread(cells: pd.DataFrame) -> bool:
    """Whether some cell has a seed spread to show (runs of more than one seed)."""
    return "seed_n" in cells.columns and bool((cells["seed_n"].fillna(0) > 1).any())


def spread_text(cell: pd.Series, digits: int) -> str:
    """' [mean 22.1 ± 3.0, n=5]' for a cell with more than one seed, else ''."""
    n = cell.get("seed_n", 0)
    if pd.isna(n) or n < 2:
        return ""
    diverged = int(cell.get("seed_diverged", 0) or 0)
    return (f" [mean {_fmt(cell['seed_mean'], digits)} ± {_fmt(cell['seed_sd'], digits)}, n={int(n)}"
            + (f", {diverged} diverged" if diverged else "") + "]")


def cell_text(cell: pd.Series) -> str:
    """'ours[marks] / paper (difference)'; '— / paper' when we have no run; 'ours / —' for a rule
    beyond the paper's; followed by the seed spread, ' [mean ± SD, n=...]', where it has one."""
    digits = DIGITS.get(cell["unit"], 3)
    has_paper = not (isinstance(cell["paper"], float) and math.isnan(cell["paper"]))
    marks = (DIVERGED if cell["status"] == "diverged" else "") + (NOTED if cell["note"] else "")
    ours = MISSING if cell["ours"] is None or pd.isna(cell["ours"]) else _fmt(cell["ours"], digits) + marks
    if cell["extra"]:  # a rule beyond the paper: the paper has no number to compare with
        return f"{ours} / {MISSING}" + spread_text(cell, digits)
    if not has_paper:
        return ours + spread_text(cell, digits)
    text = f"{ours} / {_fmt(cell['paper'], digits)}"
    if cell["status"] != "missing":
        text += f" ({_fmt(cell['difference'], digits, signed=True)})"
    return text + spread_text(cell, digits)


def wide(cells: pd.DataFrame, spec: TableSpec) -> tuple[list[str], list[list[str]]]:
    """Header and body rows in the paper's layout (row labels, then one column per width/metric).
    A row of a rule beyond the paper's goes after the last row of its group (Table 9: its training
    size), or at the end."""
    rows = list(dict.fromkeys(cells.loc[~cells["extra"], "row"]))
    for row in dict.fromkeys(cells.loc[cells["extra"], "row"]):
        group = [i for i, r in enumerate(rows) if len(r) > 1 and r[0] == row[0]]
        rows.insert(group[-1] + 1 if group else len(rows), row)
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


def to_markdown(cells: pd.DataFrame, spec: TableSpec, substitutions: dict[str, str], scale: str = FULL_SCALE) -> str:
    header, body = wide(cells, spec)
    n = counts(cells)
    out = [f"# Table {spec.number}: {scale_title(spec.title, scale)}", "",
           f"Each cell reads *ours / paper (ours - paper)*. Ours: {spec.protocol}.",
           f"{DIVERGED} the run diverged (its best value before diverging is shown); "
           f"{NOTED} see the notes below; {MISSING} no run.", ""]
    if scale != FULL_SCALE:
        out += [SCALE_NOTE.format(scale=scale.capitalize()), ""]
    if has_spread(cells):
        out += [SPREAD_PROTOCOL, ""]
    for dataset in spec.datasets:
        if dataset in substitutions:
            out += [f"**Substitution:** `{substitutions[dataset]}` runs stand in for `{dataset}`; "
                    f"their numbers are not the paper's setting.", ""]
    out += [markdown_table(header, body, len(spec.row_names)), "",
            f"Filled {n['filled']} of {n['cells']} cells; missing {n['missing']}; diverged {n['diverged']}."]
    beyond = list(dict.fromkeys(cells.loc[cells["extra"], "rule"]))
    if beyond:
        out += ["", f"Rows for rules beyond the paper's ({', '.join(beyond)}) use the same protocol and read "
                    f"*ours / {MISSING}*: the paper has no number for them, and they are not counted above."]
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
            .replace(MISSING, "--").replace("×", r"$\times$").replace("±", r"$\pm$"))


def to_latex(cells: pd.DataFrame, spec: TableSpec, scale: str = FULL_SCALE) -> str:
    header, body = wide(cells, spec)
    columns = "l" * len(spec.row_names) + "r" * (len(header) - len(spec.row_names))
    title = scale_title(spec.title, scale)
    lines = [f"% Table {spec.number}: {title}. Cells: ours / paper (ours - paper).",
             r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{_latex_escape(title)}. Each cell: ours / paper (ours $-$ paper); "
             r"$^\dagger$ diverged run; $^\ddagger$ see notes; -- no run." + (LATEX_SPREAD if has_spread(cells) else "")
             + "}",
             rf"\begin{{tabular}}{{{columns}}}", r"\toprule",
             " & ".join(_latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_escape(c) for c in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ["table", "setting", "method", "rule", "width", "train_size", "layer", "metric", "unit",
               "ours", "paper", "difference", "status", "note", "chosen_run", "candidate_runs"]


def to_csv(cells: pd.DataFrame, scale: str = FULL_SCALE) -> str:
    """One row per cell; the seed-spread columns only when some cell has more than one seed; a
    last ``scale`` column (e.g. smoke) only when the report is not built from full-scale runs: a
    CSV has no title to carry the warning, and a script must not take such numbers for real ones."""
    columns = CSV_COLUMNS + (SPREAD_COLUMNS if has_spread(cells) else [])
    shown = cells[cells["counted"] | cells["extra"] | cells["ours"].notna()][columns]
    if scale != FULL_SCALE:
        shown = shown.assign(scale=scale)
    return shown.to_csv(index=False, float_format="%.10g", lineterminator="\n")


def write(cells: pd.DataFrame, spec: TableSpec, out: Path, substitutions: dict[str, str],
          scale: str = FULL_SCALE) -> list[str]:
    """Write the three files, each saying so if ``scale`` is not full; return their names."""
    names = [f"{spec.stem}.md", f"{spec.stem}.csv", f"{spec.stem}.tex"]
    write_atomic(out / names[0], to_markdown(cells, spec, substitutions, scale))
    write_atomic(out / names[1], to_csv(cells, scale))
    write_atomic(out / names[2], to_latex(cells, spec, scale))
    return names
