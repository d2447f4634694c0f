"""Figures 1, 3-9 as PNG and PDF.

Figures built on a table (1, 4, 6, 9) plot that table's cells, so a figure and its table can never
disagree; the others (3, 5, 7, 8) read the runs directly. Conventions shared by every figure:
one colour per rule (``RULE_COLORS``, with round markers; a rule beyond the paper's gets a colour
and marker pair from ``EXTRA_STYLES``, chosen from its name, whose colours are far from every
paper rule's and whose markers are never round), width axes on a base-2 log scale with the
paper's widths as ticks, the paper's values as faint square markers of the same colour, and
"no runs" written on any panel that has none of ours. Figure 6 is small multiples: one panel per
width, sharing both axes (``Grid``). Every figure is a list of ``Panel``s put together by ``draw_panels``: the
panel draws its lines and sets up its axes, the helper does the rest (figure, "no runs", title
with the stand-in note and, for a report built from smoke runs, the scale label of
``tables.scale_label``, legends). Figures are drawn with matplotlib's object API on the Agg canvas
(no pyplot state) under the default style, and saved without timestamps, so reruns are
byte-identical.
"""
from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.lines import Line2D

from ..paper import METHOD_OF_RULE
from ..runs import write_atomic
from . import tables as tables_module
from .protocol import ALIGNMENT_RULE, ALIGNMENT_SCORE, WIDTHS, candidates, scored_epochs

RULE_COLORS = {
    "normal": "#1f77b4", "align_ada": "#d62728", "align_zero": "#ff7f0e", "align_prop": "#9467bd",
    "fa": "#2ca02c", "dfa": "#8c564b", "last_layer": "#7f7f7f", "readout_only": "#e377c2",
    "sign_symmetry": "#17becf",
}
# for rules with no colour above (rules beyond the paper's): a colour and a marker, picked from the
# rule's name, the next free one on a clash. The colours are at least as far (CIELAB) from every
# colour above as those are from one another (black, olive, gold, navy, magenta, dark teal, wine),
# and no marker is the paper rules' circle, so a plugin rule is never read as one of them.
EXTRA_STYLES = (("#000000", "^"), ("#808000", "v"), ("#e6c700", "D"), ("#00008b", "P"), ("#ff00ff", "X"),
                ("#004d40", "*"), ("#7a0020", "h"))
FALLBACK_COLORS = tuple(color for color, _ in EXTRA_STYLES)
RULE_MARKER = "o"                   # the marker of every rule in RULE_COLORS
PAPER_STYLE = dict(marker="s", s=22, alpha=0.3, linewidths=0, zorder=1)
ACC_LABEL = "best validation accuracy (%)"
SCORE_LABEL = "alignment score (cosine, unitless)"
WIDTH_LABEL = "width (filters per conv layer, log$_2$ scale)"
FIG3_RULES = ("normal", "dfa", "align_ada", "align_zero", "fa", "last_layer")
FIG5_RULES = ("normal", "align_ada", "align_zero", "dfa", "fa")
FIG7_RULES = ("normal", "align_ada", "align_zero")
SMALL_SIZES = (45, 150, 450, 1500, 4500, 15000, 45000)
SMALL_SIZE_LABELS = ("45", "150", "450", "1.5k", "4.5k", "15k", "45k")
FIG3_LRS = (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20)
FIG6_PAPER_WIDTHS = (8, 512)        # the widths the paper's Figure 6 draws
FIG6_DODGE = 0.12                   # Figure 6: seed error bars of neighbouring rules, this many octaves apart


def rule_colors(rules) -> dict[str, str]:
    """A colour for every rule: the fixed one if it has one, else one picked from its name
    (sha256, so the same name gets the same colour on every run), moving to the next fallback
    colour while another rule of ``rules`` (taken by name) already has it."""
    colors = {rule: RULE_COLORS[rule] for rule in rules if rule in RULE_COLORS}
    taken = set()
    for rule in sorted(set(rules) - set(RULE_COLORS)):
        start = int(hashlib.sha256(rule.encode()).hexdigest(), 16) % len(FALLBACK_COLORS)
        order = FALLBACK_COLORS[start:] + FALLBACK_COLORS[:start]
        colors[rule] = next((c for c in order if c not in taken), order[0])
        taken.add(colors[rule])
    return colors


def rule_marker(rule: str, color: str) -> str:
    """The marker that goes with a rule's colour: the circle for a paper rule, the marker paired
    with its colour in ``EXTRA_STYLES`` for any other."""
    if rule in RULE_COLORS or color not in FALLBACK_COLORS:
        return RULE_MARKER
    return EXTRA_STYLES[FALLBACK_COLORS.index(color)][1]


@dataclass
class Context:
    """What every figure may read: the tables' cells, the usable runs, the substitutions, options."""
    tables: dict[int, pd.DataFrame]
    runs: pd.DataFrame
    subs: dict[str, str]
    fig6_widths: tuple[int, ...] | None = None      # None: every width with runs
    colors: dict[str, str] = field(default_factory=dict)
    scale: str = tables_module.FULL_SCALE          # the scale of ``runs`` (collect.Collection.scale)

    def color(self, rule: str) -> str:
        return self.colors.get(rule) or rule_colors([rule])[rule]

    def marker(self, rule: str) -> str:
        return rule_marker(rule, self.color(rule))


@dataclass
class Drawn:
    """A finished figure: how many of our points it shows, and what to say about it."""
    figure: Figure
    points: int = 0
    notes: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)   # runs read directly (not via a table)
    rules: set[str] = field(default_factory=set)  # rules with at least one point of ours drawn


@dataclass
class Panel:
    """One axes of a figure."""
    title: str                                  # without the stand-in note
    draw: Callable                              # (ax, drawn) -> how many of our points it drew
    setup: Callable                             # (ax) -> None: scales, ticks, labels, after drawing
    stand_ins: tuple[tuple[str, str], ...] = () # (data set, prefix): name a substitution in the title
    title_size: str | None = None
    legend: dict | None = None                  # keyword arguments of a legend inside the axes
    legend_if_empty: bool = True                # that legend also on a panel with no points of ours


@dataclass(frozen=True)
class Grid:
    """Small multiples: ``panels`` axes in ``columns`` columns, sharing both axes."""
    panels: int
    columns: int
    panel_size: tuple[float, float] = (3.4, 2.8)    # inches
    legend_width: float = 1.9                       # inches on the right for the figure legend


def method(rule: str) -> str:
    return METHOD_OF_RULE.get(rule, rule)


def new_figure(panels: int):
    """One or two panels side by side; room on the right for a figure legend."""
    figure = Figure(figsize=(7.5, 4.5) if panels == 1 else (11.5, 4.3), layout="constrained")
    return figure, list(figure.subplots(1, panels, squeeze=False)[0])


def grid_figure(grid: Grid):
    """Small multiples with shared axes, filled row by row; the unused places of the last row are
    removed, and the panels above them get their x tick labels back."""
    rows = math.ceil(grid.panels / grid.columns)
    width, height = grid.panel_size
    figure = Figure(figsize=(0.8 + width * grid.columns + grid.legend_width, 0.9 + height * rows),
                    layout="constrained")
    axes = figure.subplots(rows, grid.columns, squeeze=False, sharex=True, sharey=True)
    for place in range(grid.panels, rows * grid.columns):
        figure.delaxes(axes.flat[place])
        if place - grid.columns >= 0:
            axes.flat[place - grid.columns].xaxis.set_tick_params(labelbottom=True)
    return figure, list(axes.flat[:grid.panels])


def draw_panels(ctx: Context, panels: list[Panel], legend: Callable | None = None, grid: Grid | None = None) -> Drawn:
    """The skeleton every figure shares: one axes per panel (side by side, or in ``grid``), each
    drawn and set up by its panel, 'no runs' where it drew none of ours, a title with the stand-in
    note, the panel's own legend; then ``legend()`` -> (rules, extra handles) gives a rule legend
    beside the panels. The panels of a figure side by side each carry the scale note, as they
    carry their stand-in note; a ``grid``'s figure carries it once, in the overall title its
    figure function writes (``scale_note``)."""
    figure, axes = new_figure(len(panels)) if grid is None else grid_figure(grid)
    drawn = Drawn(figure)
    for ax, panel in zip(axes, panels):
        points = panel.draw(ax, drawn)
        if not points:
            no_runs(ax)
        drawn.points += points
        panel.setup(ax)
        title = panel.title + "".join(stand_in(ctx.subs, dataset, prefix) for dataset, prefix in panel.stand_ins)
        if grid is None:
            title += scale_note(ctx)
        ax.set_title(title, **({"fontsize": panel.title_size} if panel.title_size else {}))
        if panel.legend is not None and (points or panel.legend_if_empty):
            ax.legend(**panel.legend)
    if legend is not None:
        rules, extra = legend()
        rule_legend(ctx, figure, rules, extra)
    return drawn


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


def scale_note(ctx: Context) -> str:
    """A title suffix saying the figure is drawn from smoke runs ('' at full scale)."""
    label = tables_module.scale_label(ctx.scale)
    return f"\n[{label}]" if label else ""


def no_runs(ax) -> None:
    ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center", va="center", fontsize=16, color="0.5")


def rule_legend(ctx: Context, figure, rules, extra=()) -> None:
    handles = [Line2D([], [], color=ctx.color(r), marker=ctx.marker(r), label=method(r)) for r in rules]
    handles += list(extra)
    figure.legend(handles=handles, loc="outside right center", fontsize="small", frameon=False)


def paper_handle() -> Line2D:
    return Line2D([], [], color="0.3", marker="s", linestyle="", alpha=0.3, label="paper (faint squares)")


def style_handle(linestyle, label: str) -> Line2D:
    return Line2D([], [], color="0.2", linestyle=linestyle, label=label)


def filled(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells with a value of ours that a figure shows: the paper's, and rows the paper has no number for."""
    return cells[(cells["counted"] | cells["extra"]) & cells["ours"].notna()]


def plot_cells(ax, cells: pd.DataFrame, x: str, color, linestyle="-", label=None, marker=RULE_MARKER) -> int:
    """Our filled cells as a line, the paper's values as faint markers; returns points drawn."""
    cells = cells.sort_values(x)
    if cells["paper"].notna().any():
        ax.scatter(cells[x], cells["paper"], color=color, **PAPER_STYLE)
    ours = filled(cells)
    if not ours.empty:
        ax.plot(ours[x], ours["ours"].astype(float), color=color, linestyle=linestyle, marker=marker, ms=4,
                label=label)
    return len(ours)


def table_rules(cells: pd.DataFrame) -> list[str]:
    """The rules of a table's rows in table order (the paper's, then any beyond it)."""
    return list(dict.fromkeys(cells["rule"]))


def plot_rule(ctx: Context, ax, drawn: Drawn, cells: pd.DataFrame, rule: str, x: str, linestyle="-") -> int:
    """``plot_cells`` in the rule's colour and marker; a rule with points counts as drawn."""
    points = plot_cells(ax, cells, x, ctx.color(rule), linestyle, marker=ctx.marker(rule))
    if points:
        drawn.rules.add(rule)
    return points


def plot_by_rule(ctx: Context, ax, drawn: Drawn, cells: pd.DataFrame, x: str, split: str, styles) -> int:
    """One line per rule and per value of column ``split``; ``styles`` pairs each value with its
    line style. Returns the number of points drawn."""
    points = 0
    for rule in table_rules(cells):
        for value, linestyle in styles:
            chosen = cells[(cells["rule"] == rule) & (cells[split] == value)]
            points += plot_rule(ctx, ax, drawn, chosen, rule, x, linestyle)
    return points


def save(figure: Figure, out: Path, stem: str) -> list[str]:
    """PNG and PDF with no timestamp or software stamp: identical bytes on every rerun. Written
    atomically and never through a link planted at the name (walign.runs.write_atomic)."""
    for suffix, metadata, extra in (("png", {"Software": None}, {"dpi": 130}),
                                    ("pdf", {"CreationDate": None, "Producer": None}, {})):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix, metadata=metadata, **extra)
        write_atomic(out / f"{stem}.{suffix}", buffer.getvalue())
    return [f"{stem}.png", f"{stem}.pdf"]


# ----------------------------------------------------------------------------- one function per figure
def figure1(ctx: Context) -> Drawn:
    """Alignment score vs width, one line per layer: (a) CIFAR-10 = Table 3, (b) KMNIST = Table 4."""
    def layers_of(number):
        def draw(ax, drawn):
            cells = ctx.tables[number]
            layers = sorted(cells["layer"].dropna().astype(int).unique())
            colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(layers)))
            points = 0
            for color, layer in zip(colors, layers):
                points += plot_cells(ax, cells[cells["layer"] == layer], "width", color, label=f"layer {layer}")
            ax.scatter([], [], color="0.3", label="paper (faint squares)", **PAPER_STYLE)
            return points
        return draw

    def setup(ax):
        width_axis(ax)
        ax.set_ylabel(SCORE_LABEL)
    return draw_panels(ctx, [
        Panel(name, layers_of(number), setup, ((dataset, ""),), legend=dict(fontsize="x-small", ncols=2))
        for number, dataset, name in ((3, "cifar10", "(a) CIFAR-10, ReLU (Table 3)"), (4, "kmnist", "(b) KMNIST (Table 4)"))])


def figure3(ctx: Context) -> Drawn:
    """Best validation accuracy vs lr (no max over lr), width 256 solid and 8 dashed; rules beyond
    the paper's that have runs are added."""
    datasets = ("cifar10", "kmnist")
    rules = list(FIG3_RULES) + tables_module.extra_rules(ctx.runs, datasets)
    shown = set(FIG3_RULES)

    def per_lr(dataset):
        def draw(ax, drawn):
            points = 0
            for rule in rules:
                for width, linestyle in ((256, "-"), (8, "--")):
                    found = candidates(ctx.runs, dataset=dataset, rule=rule, width=width)
                    drawn.used.update(found["path"])
                    best = found.groupby("lr")["best_val_acc"].max().dropna().sort_index()
                    if not best.empty:
                        ax.plot(best.index, 100 * best.values, color=ctx.color(rule), linestyle=linestyle,
                                marker=ctx.marker(rule), ms=4)
                        shown.add(rule)
                        drawn.rules.add(rule)
                    points += len(best)
            return points
        return draw

    def setup(ax):
        log_axis(ax, FIG3_LRS, "learning rate (log scale)")
        ax.set_ylabel(ACC_LABEL)
    return draw_panels(ctx, [Panel(name, per_lr(dataset), setup, ((dataset, ""),))
                             for dataset, name in zip(datasets, ("(a) CIFAR-10", "(b) KMNIST"))],
                       lambda: ([r for r in rules if r in shown],
                                [style_handle("-", "width 256"), style_handle("--", "width 8")]))


def figure4(ctx: Context) -> Drawn:
    """Accuracy vs width per rule: (a) CIFAR-10 = Table 6, (b) KMNIST = Table 7."""
    rules = []

    def per_rule(number):
        def draw(ax, drawn):
            cells, points = ctx.tables[number], 0
            for rule in table_rules(cells):
                rules.append(rule)
                points += plot_rule(ctx, ax, drawn, cells[cells["rule"] == rule], rule, "width")
            return points
        return draw

    def setup(ax):
        width_axis(ax)
        ax.set_ylabel(ACC_LABEL)
    return draw_panels(ctx, [Panel(name, per_rule(number), setup, ((dataset, ""),))
                             for number, dataset, name in ((6, "cifar10", "(a) CIFAR-10 (Table 6)"),
                                                           (7, "kmnist", "(b) KMNIST (Table 7)"))],
                       lambda: (list(dict.fromkeys(rules)), [paper_handle()]))


def figure5(ctx: Context) -> Drawn:
    """ImageNet training loss curves (we log the epoch's mean minibatch loss, not every 100 steps)."""
    def draw(ax, drawn):
        points = 0
        for rule in FIG5_RULES:
            found = candidates(ctx.runs, dataset="imagenet", rule=rule, allow_variants=True)
            drawn.used.update(found["path"])
            for _, run in found.iterrows():
                curve = [(r["epoch"], r["train_loss"]) for r in run["records"]
                         if isinstance(r.get("train_loss"), (int, float))]
                if not curve:
                    continue
                label = f"{method(rule)} (w{run['width']}, lr {run['lr']:g}{', ' + run['variant'] if run['variant'] else ''})"
                epochs, losses = zip(*curve)
                ax.plot(epochs, losses, color=ctx.color(rule), marker="o" if len(curve) < 20 else None, ms=3,
                        label=label)
                points += len(curve)
        return points

    def setup(ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (MSE, epoch mean of minibatches)")
    drawn = draw_panels(ctx, [Panel("ImageNet, 7-conv net (paper: minibatch MSE every 100 steps)", draw, setup,
                                    (("imagenet", ""),), "medium", dict(fontsize="x-small"), legend_if_empty=False)])
    drawn.notes.append("plotted per epoch (the mean of the epoch's minibatch losses); the paper plots "
                       "the current minibatch's loss every 100 steps")
    return drawn


def figure6_cells(ctx: Context, widths) -> pd.DataFrame:
    """Table 9's cells, plus cells by the same protocol at ``widths`` the paper did not print
    (no paper value), for every rule of the table."""
    spec = next(s for s in tables_module.TABLES if s.number == 9)
    cells = ctx.tables[9]
    printed = set(cells["width"].astype(int))
    more = []
    for width in sorted(set(widths) - printed):
        for rule in table_rules(cells):
            rows = cells[cells["rule"] == rule].drop_duplicates(subset=["train_size"])
            for p in rows.assign(width=width, value=math.nan).itertuples():
                more.append(tables_module.cell_record(spec, ctx.runs, p, rule, counted=False, extra=True))
    return pd.concat([cells, pd.DataFrame(more)], ignore_index=True) if more else cells


def figure6_widths(ctx: Context) -> tuple[tuple[int, ...], str]:
    """The widths Figure 6 draws and why: the ones asked for, else every width with at least one
    run the Table 9 protocol considers, else the paper's 8 and 512."""
    if ctx.fig6_widths:
        return tuple(sorted(set(ctx.fig6_widths), reverse=True)), "chosen with --fig6-widths"
    found = ctx.runs[ctx.runs["dataset"].isin(["small_cifar10", "cifar10"])]
    cells = figure6_cells(ctx, set(found["width"].astype(int)))
    with_runs = set(cells.loc[cells["considered"].apply(bool), "width"].astype(int))
    if with_runs:
        return tuple(sorted(with_runs, reverse=True)), "every width with runs"
    return tuple(sorted(FIG6_PAPER_WIDTHS, reverse=True)), "the paper's; no runs"


def fig6_columns(panels: int) -> int:
    """Columns of Figure 6's grid: up to three panels in a row, four as 2 x 2, more in rows of four."""
    return {4: 2, 5: 3, 6: 3}.get(panels, min(panels, 4))


def dodge(index: int, count: int) -> float:
    """The factor that moves the ``index``-th of ``count`` rules' error bars beside the others on a
    log axis (``FIG6_DODGE`` octaves apart, centred on the point)."""
    return 2 ** (FIG6_DODGE * (index - (count - 1) / 2))


def spread_handle():
    """A legend entry that looks like Figure 6's seed error bars."""
    point = Line2D([], [], color="0.3", marker="o", ms=4, mfc="white", linestyle="")
    return ErrorbarContainer((point, (), (LineCollection([], colors="0.3"),)), has_yerr=True,
                             label="mean ± SD over seeds (ddof 1)")


def plot_spread(ctx: Context, ax, cells: pd.DataFrame, rule: str, shift: float) -> int:
    """Figure 6's seed spread of one rule: mean ± SD (ddof 1) as an error bar with a hollow marker,
    beside the paper-protocol point (x times ``shift``), where a cell has more than one seed."""
    if "seed_n" not in cells.columns:
        return 0
    spread = cells[cells["seed_n"].fillna(0) > 1].sort_values("train_size")
    if not spread.empty:
        ax.errorbar(spread["train_size"] * shift, spread["seed_mean"].astype(float),
                    yerr=spread["seed_sd"].astype(float), color=ctx.color(rule), marker=ctx.marker(rule), ms=3.5,
                    mfc="white", linestyle="", capsize=2, elinewidth=1, zorder=3)
    return len(spread)


def figure6_panel(ctx: Context, cells: pd.DataFrame, width: int, spreads: list[int]) -> Panel:
    """One width of Figure 6: a line per rule, the paper's values at this width, the seed spread."""
    here = cells[cells["width"] == width]
    rules = table_rules(cells)

    def draw(ax, drawn):
        points = 0
        for index, rule in enumerate(rules):
            chosen = here[here["rule"] == rule]
            points += plot_rule(ctx, ax, drawn, chosen, rule, "train_size")
            spreads.append(plot_spread(ctx, ax, chosen, rule, dodge(index, len(rules))))
        return points

    def setup(ax):
        ax.set_xscale("log")
        ax.set_xticks(list(SMALL_SIZES), list(SMALL_SIZE_LABELS))
        pad_log_axis(ax, SMALL_SIZES)
        ax.minorticks_off()
        ax.grid(axis="y", color="0.9", linewidth=0.6)
        ax.set_axisbelow(True)
    paper = "" if here["paper"].notna().any() else " (no paper values)"
    return Panel(f"width {width}{paper}", draw, setup, title_size="medium")


def figure6(ctx: Context) -> Drawn:
    """Small CIFAR-10 accuracy vs training-set size (Table 9): one panel per width drawn, sharing
    both axes; in each a line per rule, the paper's values at that width as faint squares and,
    where a cell has runs of several seeds, their mean ± SD as an error bar beside our point."""
    widths, why = figure6_widths(ctx)
    cells = figure6_cells(ctx, widths)
    spreads: list[int] = []
    panels = [figure6_panel(ctx, cells, width, spreads) for width in sorted(widths)]
    drawn = draw_panels(ctx, panels, lambda: (table_rules(cells), [paper_handle()]
                                              + ([spread_handle()] if sum(spreads) else [])),
                        Grid(len(panels), fig6_columns(len(panels))))
    drawn.used |= tables_module.runs_read(cells[~cells["counted"]])   # cells at widths Table 9 lacks
    figure = drawn.figure
    figure.suptitle("Small CIFAR-10 accuracy vs training-set size, one panel per width (Table 9)"
                    + stand_in(ctx.subs, "small_cifar10") + stand_in(ctx.subs, "cifar10", "N = 45000: ")
                    + scale_note(ctx))
    figure.supxlabel("training images N (log scale)")
    figure.supylabel(ACC_LABEL)
    drawn.notes.append(f"widths drawn: {', '.join(map(str, sorted(widths)))} ({why})")
    if sum(spreads):
        drawn.notes.append(f"error bars: mean ± SD (ddof 1) over seeds 99-103 at the lr chosen on seed 99, "
                           f"beside our point, for the {sum(spreads)} cells with runs of more than one seed")
    return drawn


def figure7(ctx: Context) -> Drawn:
    """Seconds per epoch (training + evaluation, metrics.jsonl `seconds` of epoch 1) vs width,
    mean ± standard error over all matching runs (the paper: 5 seeds x 3 lrs)."""
    devices = set()

    def draw(ax, drawn):
        points = 0
        for rule in FIG7_RULES:
            found = candidates(ctx.runs, dataset="cifar10", rule=rule, seed=None)
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
                ax.errorbar(xs, means, yerr=errors, color=ctx.color(rule), marker="o", ms=4, capsize=3)
                ax.fill_between(xs, means - errors, means + errors, color=ctx.color(rule), alpha=0.2, linewidth=0)
                points += len(xs)
        if points:
            ax.set_ylim(bottom=0)
        return points

    def setup(ax):
        width_axis(ax)
        ax.set_ylabel("seconds per epoch (training + evaluation)")
    drawn = draw_panels(ctx, [Panel("CIFAR-10 epoch time, mean ± s.e. over runs", draw, setup, (("cifar10", ""),),
                                    "medium")],
                        lambda: (FIG7_RULES, []))
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


def figure8(ctx: Context) -> Drawn:
    """Alignment score vs epoch for every layer, with the permuted-weights baseline dashed."""
    def over_epochs(run, name):
        def draw(ax, drawn):
            if run is None:
                return 0
            drawn.used.add(run["path"])
            scored = scored_epochs(run["records"])
            epochs = sorted(scored)
            layers = max(len(scored[e].get(ALIGNMENT_SCORE) or []) for e in epochs)
            colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, max(layers, 1)))
            has_baseline, points = False, 0
            for layer in range(layers):
                def series(key):
                    return [scored[e][key][layer] if len(scored[e].get(key) or []) > layer
                            and scored[e][key][layer] is not None else np.nan for e in epochs]
                ax.plot(epochs, series(ALIGNMENT_SCORE), color=colors[layer], marker="o" if len(epochs) < 20 else None,
                        ms=3, label=f"layer {layer + 1}")
                if any("permuted_operator" in scored[e] for e in epochs):
                    has_baseline = True
                    ax.plot(epochs, series("permuted_operator"), color=colors[layer], linestyle="--", alpha=0.6)
                points += len(epochs)
            if has_baseline:
                ax.plot([], [], color="0.3", linestyle="--", label="permuted baseline")
            else:
                drawn.notes.append(f"{name}: no permuted baseline in {run['path']} (run with rule.permuted=true)")
            return points
        return draw

    def setup(ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(SCORE_LABEL)
    panels = []
    for dataset, name in (("cifar10", "(a) CIFAR-10"), ("kmnist", "(b) KMNIST")):
        run, _ = _fig8_run(ctx.runs, dataset)
        title = f"{name} (paper: width 512)" if run is None else f"{name}, width {run['width']} (paper: 512)"
        panels.append(Panel(title, over_epochs(run, name), setup, ((dataset, ""),),
                            legend=dict(fontsize="x-small", ncols=2), legend_if_empty=False))
    return draw_panels(ctx, panels)


def figure9(ctx: Context) -> Drawn:
    """Add-task minimum loss vs hidden units (Table 8): test solid, train dashed."""
    cells = ctx.tables[8]

    def draw(ax, drawn):
        return plot_by_rule(ctx, ax, drawn, cells, "width", "metric",
                            (("test_loss_best", "-"), ("train_loss_best", "--")))

    def setup(ax):
        ax.set_yscale("log")
        # losses span about 0.3 to 30: label 1-2-5 steps, not only the powers of ten
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        width_axis(ax, sorted(cells["width"].astype(int).unique()))
        ax.tick_params(axis="x", labelsize="small")
        ax.set_xlabel("hidden units (log$_2$ scale)")
        ax.set_ylabel("minimum loss (sum of MSE over 100 steps, log scale)")
    return draw_panels(ctx, [Panel("Add task RNN (Table 8)", draw, setup, (("add", ""),))],
                       lambda: (table_rules(cells), [style_handle("-", "test loss"), style_handle("--", "train loss"),
                                                     paper_handle()]))


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


def draw_all(tables: dict[int, pd.DataFrame], runs: pd.DataFrame, out: Path, subs: dict[str, str],
             fig6_widths=None, scale: str = tables_module.FULL_SCALE) -> list[dict]:
    """Draw and save every figure; one entry per figure for the index. ``scale``: that of ``runs``,
    named in every title unless full."""
    ctx = Context(tables, runs, subs, tuple(fig6_widths) if fig6_widths else None,
                  rule_colors(sorted(set(runs["rule"]))), scale)
    results = []
    with matplotlib.style.context("default"):
        for stem, title, draw in FIGURES:
            drawn = draw(ctx)
            files = save(drawn.figure, out, stem)
            results.append({"stem": stem, "title": title, "files": files, "points": drawn.points,
                            "notes": drawn.notes, "used": drawn.used, "rules": drawn.rules})
    return results
