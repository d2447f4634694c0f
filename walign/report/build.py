"""Build the whole report: scan, tables, figures, and the REPORT.md index that links them.

REPORT.md is where the report is honest about itself: how many cells are missing per table and
which, every diverged and failed run, every file it could not read, runs still in progress, runs
that fed nothing, and any data-set substitution. It holds no timestamps, so running the report
twice on the same results gives identical files.

Tables and figures are filled from the runs of one scale (``Collection.scale``): the usable runs
of any other scale (smoke rehearsals beside full-scale runs) are listed as unused, with that
reason. A report filled from smoke runs says so in its title, as every table and figure does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..runs import write_atomic
from . import figures, networks, tables
from .collect import FULL_SCALE, Collection, scan

INDEX = "REPORT.md"


@dataclass
class Summary:
    """What the command prints at the end."""
    out: Path
    runs: int
    usable: int
    cells: int
    missing: int
    diverged_runs: int
    problems: int
    files: list[str]
    scale: str = FULL_SCALE     # the scale of the runs that filled the report


def _run_line(run) -> str:
    done = "" if pd.isna(run["epochs_done"]) else f", {int(run['epochs_done'])} epochs done"
    origin = f" ({run['source_dataset']} as {run['dataset']})" if run["source_dataset"] != run["dataset"] else ""
    return f"- `{run['path']}`{origin}: {run['rule']}, width {run['width']}, lr {run['lr']:g}{done}"


def _unused_line(runs: pd.DataFrame, path: str, scale: str) -> str:
    """'- `path`', with why when the run itself says: another scale than the report's, a variant."""
    run = runs.loc[runs["path"] == path].iloc[0]
    reasons = [f"{run['scale']} scale: the report is filled from {scale}-scale runs"] if run["scale"] != scale else []
    reasons += [f"variant: {run['variant']}"] if run["variant"] else []
    return f"- `{path}`" + (f" ({'; '.join(reasons)})" if reasons else "")


def _numbers(kind: str, numbers: list[str]) -> str:
    return f"{kind}{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}"


def _beyond_the_paper(built: dict, drawn: list[dict]) -> list[str]:
    """'- `rule`: Tables 6, 9; Figures 3, 4, 6' for every rule beyond the paper's: the tables it has
    extra rows in, the figures that draw points of it."""
    where: dict[str, dict[str, list[str]]] = {}
    for number, (cells, _) in built.items():
        for rule in dict.fromkeys(cells.loc[cells["extra"], "rule"]):
            where.setdefault(rule, {}).setdefault("Table", []).append(str(number))
    for item in drawn:
        number = item["title"].split(":")[0].split()[-1]
        for rule in sorted(set(item.get("rules", ())) - tables.PAPER_RULES):
            where.setdefault(rule, {}).setdefault("Figure", []).append(number)
    return [f"- `{rule}`: " + "; ".join(_numbers(kind, numbers) for kind, numbers in found.items())
            for rule, found in sorted(where.items())]


def _header(collection: Collection) -> list[str]:
    """Title (with the scale label if the runs are not full scale), what was read, and the
    scale, substitution and variant-test notes if any."""
    runs = collection.runs
    status_counts = runs["status"].value_counts()
    scale = collection.scale()
    label = tables.scale_label(scale)
    lines = ["# walign report: the paper's tables and figures from our runs" + (f" ({label})" if label else ""), ""]
    if label:
        lines += [f"**{label.capitalize()}.** No usable full-scale run was found, so every table and figure "
                  f"is filled from {scale}-scale runs, by the same protocol: rehearsals on a few hundred examples "
                  f"per split and one or two epochs, which check that the pipeline runs end to end. Their "
                  f"differences from the paper measure nothing.", ""]
    lines += [f"Results directory: `{collection.results_dir}`", "",
             f"Runs read: {len(runs)} (" + ", ".join(f"{status_counts.get(s, 0)} {s}" for s in
                                                   ("complete", "diverged", "failed")) + ")",
             f"Runs still in progress (no summary.json, ignored): {len(collection.in_progress)}",
             f"Unreadable files (reported below, skipped): {len(collection.problems)}", ""]
    if collection.substitutions:
        lines += ["## Substitution", ""]
        for target, source in sorted(collection.substitutions.items()):
            lines.append(f"- `{source}` runs stand in for `{target}` (`--as {target}={source}`). Cells and "
                         f"points from them are **not** the paper's setting (other data, sizes and epochs).")
        lines += [f"- Runs relabelled: {collection.substituted_runs}", ""]
    if collection.notes:
        lines += ["## Variant test", ""] + [f"- {note}" for note in collection.notes] + [""]
    return lines


def _beyond_section(built: dict, drawn: list[dict]) -> list[str]:
    beyond = _beyond_the_paper(built, drawn)
    if not beyond:
        return []
    return ["## Rules beyond the paper", "",
            "Rules the paper did not test get extra rows in these tables, chosen by the same protocol "
            "and with no paper value, and lines in these figures:", ""] + beyond + [""]


def _tables_section(built: dict) -> list[str]:
    lines = ["## Tables", "",
             "Each cell: ours / paper (ours - paper). † diverged run, ‡ see the table's notes.", "",
             "| table | content | files | filled | missing | diverged |", "|---|---|---|---:|---:|---:|"]
    total = {"cells": 0, "missing": 0}
    for spec in tables.TABLES:
        cells, names = built[spec.number]
        n = tables.counts(cells)
        total["cells"] += n["cells"]
        total["missing"] += n["missing"]
        links = " · ".join(f"[{name.rsplit('.', 1)[1]}]({name})" for name in names)
        lines.append(f"| Table {spec.number} | {spec.title} | {links} | {n['filled']} of {n['cells']} | "
                     f"{n['missing']} | {n['diverged']} |")
    return lines + ["", f"Missing cells in all: {total['missing']} of {total['cells']}.", ""]


def _figures_section(drawn: list[dict]) -> list[str]:
    lines = ["## Figures", "", "| figure | files | our points |", "|---|---|---:|"]
    for item in drawn:
        links = " · ".join(f"[{name.rsplit('.', 1)[1]}]({name})" for name in item["files"])
        lines.append(f"| {item['title']} | {links} | {item['points'] or 'no runs'} |")
    figure_notes = [f"- {item['title'].split(':')[0]}: {note}" for item in drawn for note in item["notes"]]
    if figure_notes:
        lines += ["", "Figure notes:", ""] + figure_notes
    return lines + [""]


def _missing_section(built: dict) -> list[str]:
    lines = ["## Missing cells", ""]
    for spec in tables.TABLES:
        cells, _ = built[spec.number]
        n = tables.counts(cells)
        lines.append(f"### Table {spec.number}: {n['missing']} of {n['cells']} missing")
        lines += [""] + [f"- {line}" for line in tables.missing_by_row(cells)] + [""]
    return lines


def _runs_sections(collection: Collection, unused: list[str], scale: str) -> list[str]:
    """Diverged, failed and other runs, unreadable files, in progress, unused."""
    runs = collection.runs
    sections = (("Diverged runs", [_run_line(run) for _, run in runs[runs["status"] == "diverged"].iterrows()]),
                ("Failed runs", [_run_line(run) for _, run in runs[runs["status"] == "failed"].iterrows()]),
                ("Runs with another status", [_run_line(run) for _, run in runs[
                    ~runs["status"].isin(("complete", "diverged", "failed"))].iterrows()]),
                ("Unreadable files", [f"- `{path}`: {why}" for path, why in collection.problems]),
                ("Runs in progress", [f"- `{path}`" for path in collection.in_progress]),
                ("Runs used by no table or figure", [_unused_line(runs, path, scale) for path in unused]))
    lines = []
    for title, items in sections:
        lines += [f"## {title} ({len(items)})", ""] + (items or ["None."]) + [""]
    if unused:
        lines += ["Unused runs are not the paper's setting for any item: another seed, an lr off the grid, "
                  "a variant option, or a data set no item reads (see `--as`)."]
    if (runs.loc[runs["path"].isin(unused), "scale"] != scale).any():
        lines += ["", f"Tables and figures read runs of one scale only, here {scale}: one usable {FULL_SCALE}-scale "
                      f"run anywhere in the results directory leaves every smoke-scale run unused."]
    return lines


def _index(collection: Collection, built: dict, drawn: list[dict], unused: list[str], beyond: tuple) -> str:
    lines = (_header(collection) + _beyond_section(built, drawn) + _tables_section(built)
             + _figures_section(drawn) + networks.section(*beyond) + _missing_section(built)
             + _runs_sections(collection, unused, collection.scale()))
    return "\n".join(lines).rstrip() + "\n"


def build_report(results_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 substitutions: dict[str, str] | None = None, fig6_widths=None) -> Summary:
    """Scan ``results_dir``, write every table, figure and REPORT.md into ``out_dir``.
    ``fig6_widths``: the widths Figure 6 draws (default: every width with runs)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    collection = scan(results_dir, substitutions)
    usable = collection.usable()
    scale, filling = collection.scale(), collection.filling()   # one scale only: the others stay unused
    built, used, files = {}, set(), []
    for spec in tables.TABLES:
        cells = tables.build(spec, filling)
        used |= tables.runs_read(cells)
        names = tables.write(cells, spec, out, collection.substitutions, scale)
        built[spec.number] = (cells, names)
        files += names
    drawn = figures.draw_all({n: cells for n, (cells, _) in built.items()}, filling, out, collection.substitutions,
                             fig6_widths, scale)
    for item in drawn:
        used.update(item["used"])
        files += item["files"]
    found = networks.cells(filling)
    names = networks.write(found, out, scale)
    used |= networks.runs_read(found)
    files += names
    unused = sorted(set(usable["path"]) - used)
    write_atomic(out / INDEX, _index(collection, built, drawn, unused, (found, names)))
    cells = pd.concat([cells for cells, _ in built.values()])
    n = tables.counts(cells)
    return Summary(out, len(collection.runs), len(usable), n["cells"], n["missing"],
                   int((collection.runs["status"] == "diverged").sum()), len(collection.problems), files + [INDEX],
                   scale)
