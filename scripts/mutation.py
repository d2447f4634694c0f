#!/usr/bin/env python
"""Mutation testing of the code that makes walign's reported numbers, in one command:

    python scripts/mutation.py

mutmut (``pip install -e .[dev]``) copies the tree into mutants/ (git-ignored), makes one small
change at a time (a mutant) in the functions listed in FUNCTIONS, and runs the fast tests named in
setup.cfg's [mutmut] section against each. A mutant the tests do not fail on "survives": each
survivor needs a test that fails on it or, if no test can tell it apart, a one-line reason in
EQUIVALENT below. The script writes docs/mutation-result.md (score per module, every survivor with
its change and its note) and exits 1 if a survivor has no note. Not run in CI: it takes minutes.
See docs/contributing.md.

Options: --max-children N (parallel mutants, default 2), --keep (reuse mutants/ and the results
cached there instead of starting afresh), --out PATH (the result file).
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = [sys.executable, "-m", "mutmut"]

# The functions that produce reported numbers, as mutmut names them (module.x_function, or
# module.xǁClassǁmethod): evaluation and accuracy, the per-epoch record's summary, the report's
# best-epoch / best-lr / seed / alignment selection, the Add task's losses and the alignment
# score's aggregation.
FUNCTIONS = {
    "walign.datasets.splits": ["x_accuracy", "xǁDataǁevaluate", "xǁDataǁsummarize", "xǁTensorSplitǁbatches"],
    "walign.runs": ["x_best"],
    "walign.datasets.add": ["xǁAddTaskǁevaluate", "xǁAddTaskǁsummarize"],
    "walign.rnn": ["x_sequence_loss"],
    "walign.alignment": ["x_combine", "x_skipped_iterations"],
    "walign.report.protocol": ["x_*"],
}

# Survivors no test can tell apart from the original, each with the reason (mutant name -> note).
_CPU = ("equivalent on a CPU: it only changes which device a tensor is made on, the CPU either way (the "
        "mutation tests run on the CPU; tests/test_cuda.py, which uses a GPU, is not in the set)")
_COUNT = ("equivalent: the counter becomes a float32 instead of an int64, which holds every count exactly "
          "up to 2^24 (16.7 million) examples per evaluation; the largest split, ImageNet's validation set, has 50 000")
EQUIVALENT: dict[str, str] = {
    "walign.datasets.splits.x_accuracy__mutmut_3": _COUNT,
    "walign.datasets.splits.x_accuracy__mutmut_6": _COUNT,
    "walign.datasets.splits.x_accuracy__mutmut_4": _CPU,
    "walign.datasets.splits.x_accuracy__mutmut_7": _CPU,
    "walign.datasets.splits.xǁTensorSplitǁbatches__mutmut_2": _CPU,
    "walign.alignment.x_combine__mutmut_4": _CPU,
    "walign.alignment.x_combine__mutmut_7": _CPU,
    "walign.alignment.x_combine__mutmut_35": "equivalent: float() reads 'NAN' as 'nan' (case does not matter)",
    "walign.datasets.add.xǁAddTaskǁevaluate__mutmut_1":
        "equivalent: the Add task has no official test split, so evaluate ignores eval_test whatever its default",
    "walign.report.protocol.x__flag__mutmut_3":
        "equivalent: a missing flag read as None instead of '' fails the isinstance(str) check and gives no note either way",
    "walign.report.protocol.x__flag__mutmut_5": "equivalent: get() without a default returns None, handled as in _flag__mutmut_3",
    "walign.report.protocol.x_choose_alignment_run__mutmut_27":
        "equivalent: without the key, min() compares whole (key, run, epoch) tuples, but keys end with the run's "
        "path, which is unique, so the first elements always decide",
    "walign.report.protocol.x_choose_alignment_run__mutmut_29": "equivalent: as choose_alignment_run__mutmut_27 (min without a key)",
    "walign.report.protocol.x_epoch1_accuracy__mutmut_17":
        "equivalent: astype(None) is numpy's default dtype, float64, the same as astype(float)",
    "walign.report.protocol.x_lr_in__mutmut_10": "equivalent: 1e-9 is math.isclose's default rel_tol",
}


# Survivors of earlier runs and the test written for each (mutant name -> tests/FILE::TEST); the
# report checks that each is killed now.
KILLED_BY: dict[str, str] = {
    "walign.alignment.x_combine__mutmut_3": "tests/test_alignment_aggregation.py::test_sums_are_kept_in_double_precision",
    "walign.alignment.x_combine__mutmut_6": "tests/test_alignment_aggregation.py::test_sums_are_kept_in_double_precision",
    "walign.alignment.x_skipped_iterations__mutmut_16":
        "tests/test_alignment_aggregation.py::test_the_released_rule_combines_layers_not_iterations",
    "walign.datasets.splits.xǁTensorSplitǁbatches__mutmut_13": "tests/test_metrics.py::test_image_batches_come_out_as_floats_over_255",
    "walign.datasets.splits.xǁTensorSplitǁbatches__mutmut_15": "tests/test_metrics.py::test_image_batches_come_out_as_floats_over_255",
    "walign.datasets.splits.xǁTensorSplitǁbatches__mutmut_16": "tests/test_metrics.py::test_image_batches_come_out_as_floats_over_255",
    "walign.report.protocol.x_candidates__mutmut_50": "tests/test_protocol.py::test_candidates_by_train_size",
    "walign.report.protocol.x_seed_spread__mutmut_36":
        "tests/test_protocol.py::test_seed_spread_uses_the_lr_chosen_on_seed_99_alone",
    "walign.report.protocol.x_seed_statistics__mutmut_13":
        "tests/test_protocol.py::test_seed_statistics_with_missing_seeds_and_a_diverged_one",
}


# Mutations made by hand (issue 24) that mutmut's operators do not make, each applied to a copy,
# the named tests run and seen to fail, and the file restored: (change, tests that fail on it).
BY_HAND = [
    ("accuracy with argmin instead of argmax (walign/datasets/splits.py, accuracy)",
     "test_accuracy_counts_examples_whose_largest_logit_is_the_label in tests/test_metrics.py (0.4 instead of 0.6)"),
    ("best_val_acc = the last epoch's val_acc instead of the best (walign/datasets/splits.py, Data.summarize)",
     "test_summary_takes_the_best_epoch_not_the_last in tests/test_metrics.py (epoch 4 instead of 2) and "
     "test_best_over_epochs_then_over_the_lr_grid in tests/test_report.py (40.0 instead of 50.0)"),
]


def patterns() -> list[str]:
    return [f"{module}.{function}__mutmut_*" for module, functions in FUNCTIONS.items() for function in functions]


def selected(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns())


def module_of(name: str) -> str:
    return next(m for m in sorted(FUNCTIONS, key=len, reverse=True) if name.startswith(m + "."))


def mutmut(*args: str, log=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([*MUTMUT, *args], cwd=ROOT, env=env, text=True, stdout=log or subprocess.PIPE,
                          stderr=subprocess.STDOUT if log else subprocess.DEVNULL)


def statuses() -> dict[str, str]:
    """Every selected mutant -> mutmut's verdict (killed, survived, no tests, timeout, ...)."""
    out = mutmut("results", "--all", "true").stdout
    found = {}
    for line in out.splitlines():
        match = re.match(r"\s*(\S+): (.+)$", line)
        if match and selected(match.group(1)):
            found[match.group(1)] = match.group(2).strip()
    return found


def change_of(name: str) -> str:
    """The mutant's changed line(s), from ``mutmut show``: '-old' / '+new'."""
    diff = mutmut("show", name).stdout.splitlines()
    lines = [l for l in diff if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    return " / ".join(l[0] + " " + l[1:].strip() for l in lines)


def short(name: str) -> str:
    return name[len(module_of(name)) + 1:]


def code(text: str) -> str:
    """A Markdown code span for ``text`` (which holds no backquote)."""
    return f"`{text}`" if "`" not in text else text


def report(found: dict[str, str], seconds: float, command: str) -> tuple[str, list[str]]:
    per_module = defaultdict(lambda: defaultdict(int))
    for name, verdict in found.items():
        per_module[module_of(name)][verdict] += 1
    lines = ["# Mutation testing: last result", "",
             f"Written by `{command}` (see [contributing.md](contributing.md#mutation-testing)); "
             f"{len(found)} mutants in {seconds / 60:.1f} min on a 2-core CPU machine.", "",
             "Functions mutated (mutmut names; a function with a decorator other than staticmethod or "
             "classmethod is skipped by mutmut, e.g. the `SeedSpread` properties):", ""]
    for module, functions in FUNCTIONS.items():
        lines.append(f"- `{module}`: {', '.join(f.removeprefix('x_').replace('xǁ', '').replace('ǁ', '.') for f in functions)}")
    lines += ["", "Score = killed / (all - equivalent): a mutant that survives but is equivalent (no test can tell "
              "it from the original) is left out of the denominator.", "",
              "| module | mutants | killed | survived | equivalent | other | score |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for module in FUNCTIONS:
        counts = per_module.get(module, {})
        total = sum(counts.values())
        killed = counts.get("killed", 0)
        names = [n for n in found if module_of(n) == module]
        equivalent = sum(1 for n in names if found[n] != "killed" and n in EQUIVALENT)
        survived = counts.get("survived", 0)
        other = total - killed - survived
        score = killed / (total - equivalent) if total - equivalent else 1.0
        lines.append(f"| `{module}` | {total} | {killed} | {survived} | {equivalent} | {other} | {100 * score:.1f}% |")
    unexplained = sorted(n for n, v in found.items() if v != "killed" and n not in EQUIVALENT)
    unexplained += sorted(n for n in KILLED_BY if found.get(n) != "killed")
    lines += ["", "## Survivors", "", "Every mutant not killed, its change, and why no test can catch it "
              "(names without their module's prefix).", ""]
    for name in sorted(n for n, v in found.items() if v != "killed"):
        note = EQUIVALENT.get(name, "NO NOTE: needs a test that fails on it, or a reason")
        lines.append(f"- `{short(name)}` in `{module_of(name)}` ({found[name]}): {code(change_of(name))}. {note}")
    if not any(v != "killed" for v in found.values()):
        lines.append("None.")
    lines += ["", "## Mutations made by hand", ""]
    lines += [f"- {change}: fails {tests}." for change, tests in BY_HAND]
    lines += ["", "## Former survivors and the tests that kill them now", ""]
    for name, test in KILLED_BY.items():
        lines.append(f"- `{short(name)}` in `{module_of(name)}` ({found.get(name, 'not run')}): "
                     f"{code(change_of(name))}. Killed by `{test.split('::')[1]}` in `{test.split('::')[0]}`.")
    return "\n".join(lines) + "\n", unexplained


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ and its cached results")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "mutation-result.md")
    args = parser.parse_args(argv)
    if not args.keep:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    started = time.time()
    (ROOT / "mutants").mkdir(exist_ok=True)
    with open(ROOT / "mutants" / "run.log", "w") as log:
        done = mutmut("run", "--max-children", str(args.max_children), *patterns(), log=log)
    seconds = time.time() - started
    if done.returncode != 0:
        print(f"mutmut run failed (exit {done.returncode}); see mutants/run.log", file=sys.stderr)
        return 2
    found = statuses()
    text, unexplained = report(found, seconds, "python scripts/mutation.py")
    args.out.write_text(text)
    killed = sum(v == "killed" for v in found.values())
    print(f"{killed} of {len(found)} mutants killed; result in {args.out.relative_to(ROOT)}")
    for name in unexplained:
        print(f"survivor without a note: {name} ({found[name]}): {change_of(name)}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
