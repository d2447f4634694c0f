"""The paper's published numbers (Tables 1-10), shipped as data for side-by-side comparison.

One long-format CSV per table, columns: table, dataset, setting, method, width, train_size, layer,
metric, value, unit (see README.md beside this file).
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

METHOD_OF_RULE = {"normal": "Normal", "align_ada": "Align-ada", "align_zero": "Align-zero",
                  "align_prop": "Align-prop", "fa": "FA", "dfa": "DFA", "last_layer": "Last layer",
                  "readout_only": "Readout-only"}


def table(number: int) -> pd.DataFrame:
    """Rows of paper table ``number`` (1-10)."""
    folder = resources.files(__name__)
    name = next(p.name for p in folder.iterdir() if p.name.startswith(f"table{number:02d}_"))
    with folder.joinpath(name).open() as f:
        return pd.read_csv(f)
