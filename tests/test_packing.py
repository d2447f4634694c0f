"""Packing a sweep's runs into array tasks (walign/packing.py), without SLURM: the packing rule,
array splitting, the run-time estimate, and a pack run in this process (its runs are real runs,
each with its own directory, and a task's processes share its runs)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from walign.spec import RunSpec
from walign.cost import run_flops
from walign.packing import RUN_OVERHEAD_S, PackedRun, PackedTask, estimate_seconds, pack, split_arrays

ROOT = Path(__file__).resolve().parents[1]


def test_fixed_runs_per_task_are_consecutive_groups():
    assert pack([1.0] * 7, 60, runs_per_task=3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert pack([1.0] * 2, 60, runs_per_task=1) == [[0], [1]]
    with pytest.raises(ValueError, match="runs_per_task must be at least 1"):
        pack([1.0], 60, runs_per_task=0)


def test_packing_by_cost_fills_tasks_and_gives_a_long_run_its_own():
    rng = random.Random(0)
    seconds = [rng.uniform(1, 50) for _ in range(60)] + [500.0, 90.0]
    tasks = pack(seconds, 100.0)
    assert sorted(i for task in tasks for i in task) == list(range(len(seconds)))  # every run once
    assert [60] in tasks  # longer than a task's budget: alone
    for task in tasks:
        assert len(task) == 1 or sum(seconds[i] for i in task) <= 100.0
    # first-fit decreasing is within a few tasks of the lower bound
    bound = sum(min(s, 100.0) for s in seconds) / 100.0
    assert len(tasks) <= bound + 3, (len(tasks), bound)
    assert [task[0] for task in tasks] == sorted(task[0] for task in tasks)
    assert pack([5.0] * 24, 30.0) == [list(range(i, i + 6)) for i in range(0, 24, 6)]
    with pytest.raises(ValueError, match="pack_minutes must be positive"):
        pack([1.0], 0.0)


def test_arrays_are_split_at_the_maximum_size():
    assert split_arrays(5, 2) == [range(0, 2), range(2, 4), range(4, 5)]
    assert split_arrays(1001, 1001) == [range(0, 1001)]
    assert split_arrays(0, 10) == []
    with pytest.raises(ValueError, match="max_array_size must be at least 1"):
        split_arrays(3, 0)


def spec(tmp_path, **values) -> RunSpec:
    """The RunSpec of ``python main.py`` with these values (the embedded data set by default)."""
    from hydra import compose, initialize_config_dir
    base = dict(rule="normal", width=4, lr=1.0, epochs=1, device="cpu", eval_test=False, progress="lines",
                results_dir=str(tmp_path))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return RunSpec.from_config(compose("config", overrides=[f"{k}={v}" for k, v in {**base, **values}.items()]))


def test_the_estimate_is_flops_over_throughput_plus_a_fixed_overhead(tmp_path):
    run = spec(tmp_path, width=64, epochs=3)
    assert estimate_seconds(run, tflops=2.0) == pytest.approx(run_flops(run) / 2e12 + RUN_OVERHEAD_S)
    wider = spec(tmp_path, width=512, epochs=3)
    assert estimate_seconds(wider) > estimate_seconds(run) > RUN_OVERHEAD_S


def summary_of(run: RunSpec) -> dict:
    return json.loads((run.run_directory() / "summary.json").read_text())


def test_a_pack_runs_its_runs_and_each_process_takes_its_share(tmp_path, monkeypatch):
    runs = [spec(tmp_path, lr=lr) for lr in (1.0, 2.0, 5.0)]
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    assert PackedTask([PackedRun(r) for r in runs])() == ["complete"]  # process 1 of 2: the second run
    assert not runs[0].run_directory().exists() and not runs[2].run_directory().exists()
    assert summary_of(runs[1])["status"] == "complete"
    monkeypatch.setenv("SLURM_PROCID", "0")
    # process 0 of 2: the first and third; the second (finished) is not its to look at
    assert PackedTask([PackedRun(r) for r in runs])() == ["complete", "complete"]
    assert [summary_of(r)["lr"] for r in runs] == [1.0, 2.0, 5.0]
    monkeypatch.delenv("SLURM_PROCID")
    monkeypatch.delenv("SLURM_NTASKS")
    before = [(r.run_directory() / "metrics.jsonl").read_text() for r in runs]
    assert PackedTask([PackedRun(r) for r in runs])() == ["complete"] * 3  # all finished: nothing retrained
    assert [(r.run_directory() / "metrics.jsonl").read_text() for r in runs] == before


def test_a_run_that_fails_before_training_does_not_stop_the_pack(tmp_path, capsys):
    good = spec(tmp_path, lr=2.0)
    bad = spec(tmp_path / "elsewhere", lr=1.0)
    (tmp_path / "elsewhere").write_text("a file where results_dir should be\n")
    assert PackedTask([PackedRun(bad), PackedRun(good)])() == ["failed", "complete"]
    assert "walign: run failed before training" in capsys.readouterr().err
    assert summary_of(good)["status"] == "complete"
