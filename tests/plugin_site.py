"""What the plugin tests share: a site directory holding an example's distribution metadata (what `pip
install` leaves, so walign finds its entry point), and walign run in a fresh process with the example
importable, or imported into the test's own process for the time of one test."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def installed(tmp: Path, distribution: str, group: str, module: str) -> Path:
    """``tmp/site`` holding ``distribution``'s metadata with the entry point ``group``: ``module``."""
    info = tmp / "site" / f"{distribution.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{module} = {module}\n")
    return tmp / "site"


def run_walign(example: Path, *args, path=(), module: str = "main.py") -> subprocess.CompletedProcess:
    """main.py (or ``python -m module``) with ``args``, the example's folder and ``path`` on PYTHONPATH."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(map(str, [*path, example]))}
    command = [str(REPO / "main.py")] if module == "main.py" else ["-m", module]
    return subprocess.run([sys.executable, *command, *args], cwd=REPO, env=env, text=True, capture_output=True,
                          timeout=600)


@contextmanager
def imported(monkeypatch, example: Path, module: str, registry: dict, name: str):
    """``example``'s ``module`` imported in this process; what it registered as ``name`` in
    ``registry`` is removed afterwards, so the session's other tests see walign's own entries only."""
    monkeypatch.syspath_prepend(str(example))
    try:
        yield importlib.import_module(module)
    finally:
        registry.pop(name, None)
        sys.modules.pop(module, None)
