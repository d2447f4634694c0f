"""docs/extending.md's data-set example, run as the page shows it.

The page's complete example of a data set (a colour-image set generated in memory) is written as
```python blocks, each right after an HTML comment ``<!-- plugin: FILE.py -->`` naming the file it
belongs to. These tests take those blocks out of the page, write them into a temporary directory
as that file, and run the real ``python main.py +dataset_module=...`` there (one epoch at width 4
on the CPU), then ``walign status --module ...``: the example must train to a complete
``summary.json``, refuse the wrong value the page shows with the page's message, and be counted
complete by ``walign status``. A newcomer who copies the page gets a working data set.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "extending.md"
MAIN = REPO / "main.py"
SECTION = "## Adding a data set"
MARKER = re.compile(r"^<!--\s*plugin:\s*(\S+\.py)\s*-->\s*$")
FAST = ["width=4", "epochs=1", "progress=none", "device=cpu"]


def section(text: str) -> list[str]:
    """The lines of the data-set section: from its heading to the next level-2 heading."""
    lines = text.splitlines()
    start = lines.index(SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def plugin_files(lines: list[str]) -> dict[str, str]:
    """{file name: source}: every ```python block right after a plugin marker, joined per file."""
    files: dict[str, list[str]] = {}
    i = 0
    while i < len(lines):
        match = MARKER.match(lines[i].strip())
        i += 1
        if not match:
            continue
        while i < len(lines) and not lines[i].strip():
            i += 1
        assert i < len(lines) and lines[i].strip() == "```python", \
            f"{DOC.name}: the marker for {match.group(1)} is not followed by a ```python block"
        end = lines.index("```", i + 1)
        files.setdefault(match.group(1), []).append("\n".join(lines[i + 1:end]))
        i = end + 1
    return {name: "\n\n\n".join(blocks) + "\n" for name, blocks in files.items()}


def shown_refusals(lines: list[str], module: str) -> list[tuple[list[str], str]]:
    """(main.py arguments, the error line shown under them) for each refused command the section's
    ```console blocks show for ``module``."""
    found, fenced = [], None
    for index, line in enumerate(lines):
        if line.strip().startswith("```"):
            fenced = line.strip()[3:] if fenced is None else None
            continue
        if fenced != "console" or not line.startswith("$ python main.py") or f"+dataset_module={module}" not in line:
            continue
        after = lines[index + 1] if index + 1 < len(lines) else ""
        if after.startswith("walign: error:"):
            found.append((line.split()[3:], after))
    return found


@pytest.fixture(scope="module")
def example() -> tuple[str, str, str, list[str]]:
    """(module name, its source, the data set name it registers, the section's lines)."""
    lines = section(DOC.read_text(encoding="utf-8"))
    files = plugin_files(lines)
    assert len(files) == 1, f"expected one plugin file in {DOC.name}'s data-set section, found {sorted(files)}"
    (name, source), = files.items()
    registered = re.findall(r"""@register\(\s*["'](\w+)["']\s*\)""", source)
    assert len(registered) == 1, f"{name} should register one data set, registers {registered}"
    return name[:-3], source, registered[0], lines


def walign_main(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(MAIN), *args], cwd=cwd, env=env, text=True, capture_output=True,
                          timeout=300, check=False)


def walign_status(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "walign"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "walign.status"]
    return subprocess.run([*command, "status", *args], cwd=cwd, text=True, capture_output=True, timeout=120,
                          check=False)


def test_the_example_is_a_colour_data_set_without_files(example):
    """What the page promises of its example: colour images, nothing to read, so no locate."""
    module, source, _, _ = example
    compile(source, f"{module}.py", "exec")
    assert "in_channels=3" in source and "channels=3" in source
    assert "def locate" not in source and "needs_root" not in source and '"root"' not in source


def test_the_example_trains_and_walign_status_counts_it(example, tmp_path):
    module, source, dataset, lines = example
    (tmp_path / f"{module}.py").write_text(source, encoding="utf-8")
    results = tmp_path / "results"

    proc = walign_main(tmp_path, f"+dataset_module={module}", f"dataset={dataset}", *FAST, f"results_dir={results}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("complete:"), proc.stdout
    (run,) = results.glob(f"{dataset}/*/w4-*")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["dataset"] == dataset
    assert summary["epochs_done"] == 1 and summary["width"] == 4
    from walign.datasets.splits import CLASSIFICATION_KEYS
    missing = [key for key in CLASSIFICATION_KEYS if summary.get(key) is None]
    assert not missing, f"summary.json lacks {missing}"
    assert 0 <= summary["best_val_acc"] <= 1 and 0 <= summary["final_test_acc"] <= 1
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["epoch"] == 1 and record["val_acc"] == summary["best_val_acc"]

    status = walign_status(tmp_path, "--module", module, str(results))
    assert status.returncode == 0, status.stderr
    assert re.search(r"^\s*1 complete, 0 diverged, 0 failed\b", status.stdout, re.MULTILINE), status.stdout
    # without the module the run cannot be checked, as the page says
    unchecked = walign_status(tmp_path, str(results))
    assert unchecked.returncode == 0, unchecked.stderr
    assert re.search(r"^\s*0 complete, 0 diverged, 1 failed\b", unchecked.stdout, re.MULTILINE), unchecked.stdout
    assert "not registered here" in unchecked.stdout

    refusals = shown_refusals(lines, module)
    assert refusals, "the page shows no refused command for its example"
    for args, message in refusals:
        refused = walign_main(tmp_path, *args, f"results_dir={tmp_path / 'refused'}")
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert refused.stderr.strip().splitlines()[-1] == message
        assert not (tmp_path / "refused").exists()
