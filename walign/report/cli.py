"""The ``walign-report`` command: argument checking, one-line errors, a short summary on stdout."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PROG = "walign-report"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (no usage block) and exit status 2."""

    def error(self, message):
        sys.stderr.write(f"{PROG}: error: {message} (see {PROG} --help)\n")
        raise SystemExit(2)


def parse_substitution(text: str) -> tuple[str, str]:
    """'cifar10=embedded' -> ('cifar10', 'embedded'): embedded runs stand in for cifar10."""
    from ..datasets import DATASETS  # the one registry of data set names
    target, sep, source = text.partition("=")
    if not sep or target not in DATASETS or source not in DATASETS or target == source:
        raise argparse.ArgumentTypeError(
            f"--as wants TARGET=SOURCE with two different data sets from {', '.join(sorted(DATASETS))}, got {text!r}")
    return target, source


def parse_widths(text: str) -> tuple[int, ...]:
    """'8,16,32' -> (8, 16, 32): positive integers, comma-separated."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or any(w <= 0 for w in widths):
        raise argparse.ArgumentTypeError(f"--fig6-widths wants positive integers separated by commas, e.g. 8,16,32, "
                                         f"got {text!r}")
    return widths


def parser() -> Parser:
    p = Parser(prog=PROG, description="Rebuild the paper's Tables 1-10 and Figures 1, 3-9 from a walign "
               "results directory, with the paper's numbers beside ours, and an index REPORT.md.")
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="the results directory to scan (e.g. results)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="where to write the report (default: RESULTS_DIR/report); created if needed")
    p.add_argument("--as", dest="substitutions", metavar="TARGET=SOURCE", action="append", default=[],
                   type=parse_substitution,
                   help="let runs of data set SOURCE fill the cells of TARGET, e.g. cifar10=embedded for "
                        "short runs on the embedded sample; REPORT.md says so. Repeatable")
    p.add_argument("--module", metavar="NAME", action="append", default=[],
                   help="import the plugin module NAME first (as +dataset_module=NAME did for the runs), so that "
                        "runs of its data sets and rules can be judged. Repeatable")
    p.add_argument("--fig6-widths", metavar="W,W,...", type=parse_widths, default=None,
                   help="the widths Figure 6 draws, one panel each, e.g. 8,16,32 (default: every width "
                        "with at least one run, or the paper's 8 and 512 when there are none)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    from ..status import import_modules
    import_modules(args.module, p.error)
    results = Path(args.results_dir)
    if not results.is_dir():
        return fail(f"results directory {results} does not exist or is not a directory")
    targets = [target for target, _ in args.substitutions]
    if len(set(targets)) != len(targets):
        return fail("--as names the same target data set twice")
    out = Path(args.out) if args.out else results / "report"
    if problem := unfit_out(out):
        return fail(problem)
    from .build import build_report  # matplotlib and pandas load only once the arguments are fine
    try:
        summary = build_report(results, out, dict(args.substitutions), args.fig6_widths)
    except OSError as err:
        return fail(f"cannot write the report to {out}: {err.strerror or err}")
    print(f"{summary.runs} runs read ({summary.usable} usable); {summary.cells - summary.missing} of "
          f"{summary.cells} table cells filled, {summary.missing} missing; {summary.diverged_runs} diverged "
          f"run(s); {summary.problems} unreadable file(s)")
    from .tables import scale_label
    if label := scale_label(summary.scale):   # the same words as in every file it wrote
        print(f"every table and figure was filled from {summary.scale}-scale runs ({label})")
    print(f"wrote {len(summary.files)} files; index: {summary.out / 'REPORT.md'}")
    return 0


def unfit_out(out: Path) -> str | None:
    """Why the report must not be written to ``out``, or None. The report writes only outside
    the runs: not into a run directory or below one (its files would sit among a run's state
    files, and a tool reading the run would meet them), and not through a symbolic link, whose
    target could be anywhere."""
    if out.is_symlink():
        return f"--out {out} is a symbolic link (to {os.readlink(out)}); give the directory itself"
    if out.exists() and not out.is_dir():
        return f"--out {out} exists and is not a directory"
    from ..runs import RUN_MARKERS
    resolved = out.resolve()
    for folder in (resolved, *resolved.parents):
        if folder.is_dir() and any(os.path.lexists(folder / name) for name in RUN_MARKERS):
            return f"--out {out} is inside the run directory {folder}; write the report outside the runs"
    return None


def fail(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return 2
