"""Figures 1, 3-9 as PNG and PDF.

Figures built on a table (1, 4, 6, 9) plot that table's cells, so a figure and its table can never
disagree; the others (3, 5, 7, 8) read the runs directly. Conventions shared by every figure:
one colour per rule (``RULE_COLORS``), width axes on a base-2 log scale with the paper's widths as
ticks, the paper's values as faint square markers of the same colour, and "no runs" written on any
panel that has none of ours. Figures are drawn with matplotlib's object API on the Agg canvas (no
pyplot state) under the default style, and saved without timestamps, so reruns are byte-identical.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.lines import Line2D

from ..paper import METHOD_OF_RULE
from .protocol import ALIGNMENT_RULE, ALIGNMENT_SCORE, WIDTHS, candidates, scored_epochs
from .tables import RULE_OF_METHOD

RULE_COLORS = {
    "normal": "#1f77b4", "align_ada": "#d62728", "align_zero": "#ff7f0e", "align_prop": "#9467bd",
    "fa": "#2ca02c", "dfa": "#8c564b", "last_layer": "#7f7f7f", "readout_only": "#e377c2",
}
PAPER_STYLE = dict(marker="s", s=22, alpha=0.3, linewidths=0, zorder=1)
ACC_LABEL = "best validation accuracy (%)"
SCORE_LABEL = "alignment score (cosine, unitless)"
WIDTH_LABEL = "width (filters per conv layer, log$_2$ scale)"
FIG3_RULES = ("normal", "dfa", "align_ada", "align_zero", "fa", "last_layer")
FIG5_RULES = ("normal", "align_ada", "align_zero", "dfa", "fa")
FIG7_RULES = ("normal", "align_ada", "align_zero")
SMALL_SIZES = (45, 150, 450, 1500, 4500, 15000, 45000)
FIG3_LRS = (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20)


@dataclass
class Drawn:
    """A finished figure: how many of our points it shows, and what to say about it."""
    figure: Figure
    points: int = 0
    notes: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)   # runs read directly (not via a table)


def method(rule: str) -> str:
    return METHOD_OF_RULE.get(rule, rule)


def new_figure(panels: int):
    """One or two panels side by side; room on the right for a figure legend."""
    figure = Figure(figsize=(7.5, 4.5) if panels == 1 else (11.5, 4.3), layout="constrained")
    return figure, list(figure.subplots(1, panels, squeeze=False)[0])


def pad_log_axis(ax, ticks, factor: float = 1.3) -> None:
    """Leave room beyond the first and last tick (points there would sit on the frame),
    without cutting off data that lies further out."""
    low, high = ax.get_xlim()
    ax.set_xlim(min(low, min(ticks) / factor), max(high, max(ticks) * factor))


def width_axis(ax, widths=WIDTHS) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(widths), [str(w) for w in widths])
    pad_log_axis(ax, widths)
    ax.minorticks_off()
    ax.set_xlabel(WIDTH_LABEL)


def log_axis(ax, ticks, label: str) -> None:
    ax.set_xscale("log")
    ax.set_xticks(list(ticks), [f"{t:g}" for t in ticks])
    pad_log_axis(ax, ticks)
    ax.minorticks_off()
    ax.set_xlabel(label)


def stand_in(subs: dict[str, str], dataset: str, prefix: str = "") -> str:
    """A title suffix saying that another data set's runs are plotted as ``dataset``."""
    return f"\n[{prefix}{subs[dataset]} runs stand in for {dataset}]" if dataset in subs else ""


def no_runs(ax) -> None:
    ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center", va="center", fontsize=16, color="0.5")


def rule_legend(figure, rules, extra=()) -> None:
    handles = [Line2D([], [], color=RULE_COLORS[r], marker="o", label=method(r)) for r in rules]
    handles += list(extra)
    figure.legend(handles=handles, loc="outside right center", fontsize="small", frameon=False)


def paper_handle() -> Line2D:
    return Line2D([], [], color="0.3", marker="s", linestyle="", alpha=0.3, label="paper (faint squares)")


def style_handle(linestyle: str, label: str) -> Line2D:
    return Line2D([], [], color="0.2", linestyle=linestyle, label=label)


def filled(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["counted"] & cells["ours"].notna()]


def plot_cells(ax, cells: pd.DataFrame, x: str, color, linestyle="-", label=None) -> int:
    """Our filled cells as a line, the paper's values as faint markers; returns points drawn."""
    cells = cells.sort_values(x)
    ax.scatter(cells[x], cells["paper"], color=color, **PAPER_STYLE)
    ours = filled(cells)
    if not ours.empty:
        ax.plot(ours[x], ours["ours"].astype(float), color=color, linestyle=linestyle, marker="o", ms=4, label=label)
    return len(ours)


def plot_by_rule(ax, cells: pd.DataFrame, x: str, split: str, styles) -> tuple[list[str], int]:
    """One line per rule and per value of column ``split``; ``styles`` pairs each value with its
    line style. Returns the rules in table order and the number of points drawn."""
    rules = [RULE_OF_METHOD[m] for m in dict.fromkeys(cells["method"])]
    points = 0
    for rule in rules:
        for value, linestyle in styles:
            chosen = cells[(cells["rule"] == rule) & (cells[split] == value)]
            points += plot_cells(ax, chosen, x, RULE_COLORS[rule], linestyle)
    return rules, points


def save(figure: Figure, out: Path, stem: str) -> list[str]:
    """PNG and PDF with no timestamp or software stamp: identical bytes on every rerun."""
    figure.savefig(out / f"{stem}.png", dpi=130, metadata={"Software": None})
    figure.savefig(out / f"{stem}.pdf", metadata={"CreationDate": None, "Producer": None})
    return [f"{stem}.png", f"{stem}.pdf"]


# ----------------------------------------------------------------------------- one function per figure
def figure1(tables, runs, subs) -> Drawn:
    """Alignment score vs width, one line per layer: (a) CIFAR-10 = Table 3, (b) KMNIST = Table 4."""
    figure, axes = new_figure(2)
    drawn = Drawn(figure)
    for ax, number, dataset, name in zip(axes, (3, 4), ("cifar10", "kmnist"),
                                         ("(a) CIFAR-10, ReLU (Table 3)", "(b) KMNIST (Table 4)")):
        cells = tables[number]
        layers = sorted(cells["layer"].dropna().astype(int).unique())
        colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(layers)))
        points = 0
        for color, layer in zip(colors, layers):
            points += plot_cells(ax, cells[cells["layer"] == layer], "width", color, label=f"layer {layer}")
        ax.scatter([], [], color="0.3", label="paper (faint squares)", **PAPER_STYLE)
        if not points:
            no_runs(ax)
        drawn.points += points
        width_axis(ax)
        ax.set_ylabel(SCORE_LABEL)
        ax.set_title(name + stand_in(subs, dataset))
        ax.legend(fontsize="x-small", ncols=2)
    return drawn


def figure3(tables, runs, subs) -> Drawn:
    """Best validation accuracy vs lr (no max over lr), width 256 solid and 8 dashed."""
    figure, axes = new_figure(2)
    drawn = Drawn(figure)
    for ax, dataset, name in zip(axes, ("cifar10", "kmnist"), ("(a) CIFAR-10", "(b) KMNIST")):
        points = 0
        for rule in FIG3_RULES:
            for width, linestyle in ((256, "-"), (8, "--")):
                found = candidates(runs, dataset=dataset, rule=rule, width=width)
                drawn.used.update(found["path"])
                best = found.groupby("lr")["best_val_acc"].max().dropna().sort_index()
                if not best.empty:
                    ax.plot(best.index, 100 * best.values, color=RULE_COLORS[rule], linestyle=linestyle, marker="o", ms=4)
                points += len(best)
        if not points:
            no_runs(ax)
        drawn.points += points
        log_axis(ax, FIG3_LRS, "learning rate (log scale)")
        ax.set_ylabel(ACC_LABEL)
        ax.set_title(name + stand_in(subs, dataset))
    rule_legend(figure, FIG3_RULES, [style_handle("-", "width 256"), style_handle("--", "width 8")])
    return drawn


def figure4(tables, runs, subs) -> Drawn:
    """Accuracy vs width per rule: (a) CIFAR-10 = Table 6, (b) KMNIST = Table 7."""
    figure, axes = new_figure(2)
    drawn = Drawn(figure)
    rules = []
    for ax, number, dataset, name in zip(axes, (6, 7), ("cifar10", "kmnist"),
                                         ("(a) CIFAR-10 (Table 6)", "(b) KMNIST (Table 7)")):
        cells = tables[number]
        points = 0
        for m in dict.fromkeys(cells["method"]):
            rule = RULE_OF_METHOD[m]
            rules.append(rule)
            points += plot_cells(ax, cells[cells["method"] == m], "width", RULE_COLORS[rule])
        if not points:
            no_runs(ax)
        drawn.points += points
        width_axis(ax)
        ax.set_ylabel(ACC_LABEL)
        ax.set_title(name + stand_in(subs, dataset))
    rule_legend(figure, list(dict.fromkeys(rules)), [paper_handle()])
    return drawn


def figure5(tables, runs, subs) -> Drawn:
    """ImageNet training loss curves (we log the epoch's mean minibatch loss, not every 100 steps)."""
    figure, axes = new_figure(1)
    ax, drawn = axes[0], Drawn(figure)
    for rule in FIG5_RULES:
        found = candidates(runs, dataset="imagenet", rule=rule, allow_variants=True)
        drawn.used.update(found["path"])
        for _, run in found.iterrows():
            curve = [(r["epoch"], r["train_loss"]) for r in run["records"] if isinstance(r.get("train_loss"), (int, float))]
            if not curve:
                continue
            label = f"{method(rule)} (w{run['width']}, lr {run['lr']:g}{', ' + run['variant'] if run['variant'] else ''})"
            epochs, losses = zip(*curve)
            ax.plot(epochs, losses, color=RULE_COLORS[rule], marker="o" if len(curve) < 20 else None, ms=3, label=label)
            drawn.points += len(curve)
    if not drawn.points:
        no_runs(ax)
    else:
        ax.legend(fontsize="x-small")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (MSE, epoch mean of minibatches)")
    ax.set_title("ImageNet, 7-conv net (paper: minibatch MSE every 100 steps)" + stand_in(subs, "imagenet"),
                 fontsize="medium")
    drawn.notes.append("plotted per epoch (the mean of the epoch's minibatch losses); the paper plots "
                       "the current minibatch's loss every 100 steps")
    return drawn


def figure6(tables, runs, subs) -> Drawn:
    """Small CIFAR-10 accuracy vs training-set size: width 512 solid, width 8 dashed (Table 9)."""
    figure, axes = new_figure(1)
    ax, drawn = axes[0], Drawn(figure)
    rules, drawn.points = plot_by_rule(ax, tables[9], "train_size", "width", ((512, "-"), (8, "--")))
    if not drawn.points:
        no_runs(ax)
    log_axis(ax, SMALL_SIZES, "training images (log scale)")
    ax.set_ylabel(ACC_LABEL)
    ax.set_title("Small CIFAR-10 (Table 9)" + stand_in(subs, "small_cifar10") + stand_in(subs, "cifar10", "N = 45000: "))
    rule_legend(figure, rules, [style_handle("-", "width 512"), style_handle("--", "width 8"), paper_handle()])
    return drawn


def figure7(tables, runs, subs) -> Drawn:
    """Seconds per epoch (training + evaluation, metrics.jsonl `seconds` of epoch 1) vs width,
    mean ± standard error over all matching runs (the paper: 5 seeds x 3 lrs)."""
    figure, axes = new_figure(1)
    ax, drawn = axes[0], Drawn(figure)
    devices = set()
    for rule in FIG7_RULES:
        found = candidates(runs, dataset="cifar10", rule=rule, seed=None)
        xs, means, errors = [], [], []
        for width, group in found.groupby("width"):
            seconds = [r["seconds"] for records in group["records"] for r in records
                       if r.get("epoch") == 1 and isinstance(r.get("seconds"), (int, float))]
            if not seconds:
                continue
            drawn.used.update(group["path"])
            devices.update(group["device"])
            xs.append(width)
            means.append(float(np.mean(seconds)))
            errors.append(float(np.std(seconds, ddof=1) / math.sqrt(len(seconds))) if len(seconds) > 1 else 0.0)
        if xs:
            means, errors = np.array(means), np.array(errors)
            ax.errorbar(xs, means, yerr=errors, color=RULE_COLORS[rule], marker="o", ms=4, capsize=3)
            ax.fill_between(xs, means - errors, means + errors, color=RULE_COLORS[rule], alpha=0.2, linewidth=0)
            drawn.points += len(xs)
    if not drawn.points:
        no_runs(ax)
    else:
        ax.set_ylim(bottom=0)
    width_axis(ax)
    ax.set_ylabel("seconds per epoch (training + evaluation)")
    ax.set_title("CIFAR-10 epoch time, mean ± s.e. over runs" + stand_in(subs, "cifar10"), fontsize="medium")
    rule_legend(figure, FIG7_RULES)
    if devices:
        drawn.notes.append("devices: " + "; ".join(sorted(devices)) + (" (mixed: times are not comparable)"
                                                                        if len(devices) > 1 else ""))
    return drawn


def _fig8_run(runs, dataset):
    """The alignment run to plot: width 512 if there is one, else the widest; most scored epochs."""
    found = candidates(runs, dataset=dataset, rule=ALIGNMENT_RULE)
    found = found[found["records"].apply(lambda records: bool(scored_epochs(records)))]
    if found.empty:
        return None, found
    ranked = sorted(found.iterrows(), key=lambda item: (item[1]["width"] != 512, -item[1]["width"],
                                                       -len(scored_epochs(item[1]["records"])), item[1]["path"]))
    return ranked[0][1], found


def figure8(tables, runs, subs) -> Drawn:
    """Alignment score vs epoch for every layer, with the permuted-weights baseline dashed."""
    figure, axes = new_figure(2)
    drawn = Drawn(figure)
    for ax, dataset, name in zip(axes, ("cifar10", "kmnist"), ("(a) CIFAR-10", "(b) KMNIST")):
        run, found = _fig8_run(runs, dataset)
        if run is None:
            no_runs(ax)
            ax.set_title(f"{name} (paper: width 512)" + stand_in(subs, dataset))
        else:
            drawn.used.add(run["path"])
            scored = scored_epochs(run["records"])
            epochs = sorted(scored)
            layers = max(len(scored[e].get(ALIGNMENT_SCORE) or []) for e in epochs)
            colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, max(layers, 1)))
            has_baseline = False
            for layer in range(layers):
                def series(key):
                    return [scored[e][key][layer] if len(scored[e].get(key) or []) > layer
                            and scored[e][key][layer] is not None else np.nan for e in epochs]
                ax.plot(epochs, series(ALIGNMENT_SCORE), color=colors[layer], marker="o" if len(epochs) < 20 else None,
                        ms=3, label=f"layer {layer + 1}")
                if any("permuted_operator" in scored[e] for e in epochs):
                    has_baseline = True
                    ax.plot(epochs, series("permuted_operator"), color=colors[layer], linestyle="--", alpha=0.6)
                drawn.points += len(epochs)
            if has_baseline:
                ax.plot([], [], color="0.3", linestyle="--", label="permuted baseline")
            else:
                drawn.notes.append(f"{name}: no permuted baseline in {run['path']} (run with rule.permuted=true)")
            ax.set_title(f"{name}, width {run['width']} (paper: 512)" + stand_in(subs, dataset))
            ax.legend(fontsize="x-small", ncols=2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(SCORE_LABEL)
    return drawn


def figure9(tables, runs, subs) -> Drawn:
    """Add-task minimum loss vs hidden units (Table 8): test solid, train dashed."""
    figure, axes = new_figure(1)
    ax, drawn = axes[0], Drawn(figure)
    cells = tables[8]
    rules, drawn.points = plot_by_rule(ax, cells, "width", "metric",
                                       (("test_loss_best", "-"), ("train_loss_best", "--")))
    if not drawn.points:
        no_runs(ax)
    ax.set_yscale("log")
    # losses span about 0.3 to 30: label 1-2-5 steps, not only the powers of ten
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    width_axis(ax, sorted(cells["width"].astype(int).unique()))
    ax.tick_params(axis="x", labelsize="small")
    ax.set_xlabel("hidden units (log$_2$ scale)")
    ax.set_ylabel("minimum loss (sum of MSE over 100 steps, log scale)")
    ax.set_title("Add task RNN (Table 8)" + stand_in(subs, "add"))
    rule_legend(figure, rules, [style_handle("-", "test loss"), style_handle("--", "train loss"), paper_handle()])
    return drawn


FIGURES = (
    ("figure1_alignment_vs_width", "Figure 1: alignment score vs width, per layer (Tables 3, 4)", figure1),
    ("figure3_accuracy_vs_lr", "Figure 3: best accuracy vs learning rate, widths 8 and 256", figure3),
    ("figure4_accuracy_vs_width", "Figure 4: accuracy vs width (Tables 6, 7)", figure4),
    ("figure5_imagenet_loss", "Figure 5: ImageNet training loss curves", figure5),
    ("figure6_small_cifar10", "Figure 6: Small CIFAR-10 accuracy vs training-set size (Table 9)", figure6),
    ("figure7_epoch_time", "Figure 7: seconds per epoch vs width", figure7),
    ("figure8_alignment_vs_epoch", "Figure 8: alignment score over training, with the permuted baseline", figure8),
    ("figure9_add_task", "Figure 9: Add-task minimum loss vs hidden units (Table 8)", figure9),
)


def draw_all(tables: dict[int, pd.DataFrame], runs: pd.DataFrame, out: Path, subs: dict[str, str]) -> list[dict]:
    """Draw and save every figure; one entry per figure for the index."""
    results = []
    with matplotlib.style.context("default"):
        for stem, title, draw in FIGURES:
            drawn = draw(tables, runs, subs)
            files = save(drawn.figure, out, stem)
            results.append({"stem": stem, "title": title, "files": files, "points": drawn.points,
                            "notes": drawn.notes, "used": drawn.used})
    return results
