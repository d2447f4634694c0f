"""The report: rebuild the paper's Tables 1-10 and Figures 1, 3-9 from a results directory.

    walign-report RESULTS_DIR --out DIR [--as cifar10=embedded] [--fig6-widths 8,16,32]
    python -m walign.report RESULTS_DIR --out DIR

Modules: ``collect`` (find runs, one pandas row each), ``variants`` (which runs leave the paper's
setting, judged against the defaults), ``protocol`` (the selection of docs/method.md §4.4 and §10:
which runs feed a cell and how they become one number), ``tables`` (one spec per table) and
``figures`` (panels on a shared skeleton), ``build`` (everything plus the REPORT.md index), ``cli``
(the command).
"""
from .build import build_report
from .collect import scan

__all__ = ["build_report", "scan"]
