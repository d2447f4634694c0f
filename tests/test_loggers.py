"""Loggers (issue 38), with the real packages, offline: TensorBoard's event files read back with
TensorBoard's own reader, MLflow's store read back with MlflowClient. Each epoch appears once in
every logger after a SIGTERM and after a kill -9 and their relaunches; a logger that fails costs
the run nothing but one warning line; a logger whose package is missing is refused in one line;
the runs of one process each get their own logger run. W&B offline where it is installed."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from test_faults import (FAST, assert_clean, environment, epochs, finish, launch, read_until, spec_of, status,
                         wait_for, walign)
from test_faults_round2 import results_of

tensorboard = pytest.importorskip("tensorboard", reason="logger tests need tensorboard: pip install -e '.[test]'")
mlflow = pytest.importorskip("mlflow", reason="logger tests need mlflow: pip install -e '.[test]'")

ARGS = [*FAST, "width=8", "epochs=3"]


def scalars(directory: Path, tag: str = "val_acc") -> list[tuple[int, float]]:
    """(step, value) of ``tag`` as TensorBoard shows it (its reader purges orphaned steps)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    reader = EventAccumulator(str(directory / "tensorboard"))
    reader.Reload()
    return [(event.step, event.value) for event in reader.Scalars(tag)]


def mlflow_runs(results: Path) -> list:
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{(results / '.mlflow' / 'mlflow.db').resolve()}")
    return client, [run for experiment in client.search_experiments()
                    for run in client.search_runs([experiment.experiment_id])]


def history(client, run, key: str = "val_acc") -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def same(logged: list[tuple[int, float]], written: list[tuple[int, float]]) -> bool:
    """The same steps, in order, with the same values (to float32, TensorBoard's precision)."""
    return ([step for step, _ in logged] == [step for step, _ in written]
            and [value for _, value in logged] == pytest.approx([value for _, value in written], rel=1e-6))


def val_accs(directory: Path) -> list[tuple[int, float]]:
    return [(r["epoch"], r["val_acc"]) for r in map(json.loads, (directory / "metrics.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory):
    """The same run without any logger: the numbers every logged run must have."""
    tmp = tmp_path_factory.mktemp("plain")
    code, out, err = walign(tmp, *ARGS, f"results_dir={tmp / 'results'}")
    assert code == 0, out + err
    return results_of(spec_of(tmp / "results", *ARGS).run_directory())


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_each_epoch_once_in_tensorboard_and_mlflow_after_a_stop_and_a_relaunch(tmp_path, undisturbed, stop):
    """logger=[tensorboard,mlflow], stopped: SIGTERM after epoch 1 (it saves at the next step),
    kill -9 as soon as epoch 2 is in metrics.jsonl (logged, and perhaps not yet checkpointed, so
    the relaunch trains it again); then relaunched: the event files hold val_acc at steps 1, 2, 3
    once each, one MLflow run holds the same history, both equal to metrics.jsonl, and the run's
    numbers are those of a run without loggers."""
    results = tmp_path / "results"
    args = [*ARGS, "logger=[tensorboard,mlflow]", f"results_dir={results}"]
    directory = spec_of(results, *ARGS).run_directory()
    proc = launch(tmp_path, *args)
    seen = read_until(proc, r"\] epoch 1/3 ")
    if stop == "SIGTERM":
        wait_for(lambda: (directory / "checkpoint.pt").exists(), what="the first checkpoint")
    else:
        wait_for(lambda: len((directory / "metrics.jsonl").read_text().splitlines()) >= 2, what="epoch 2")
    os.kill(proc.pid, getattr(signal, stop))
    finish(proc, before=seen)
    assert not (directory / "summary.json").exists(), "the run finished before it was stopped"
    code, out, err = walign(tmp_path, *args)
    assert code == 0, out + err
    assert_clean(out, err)
    assert "warning" not in out + err, out + err
    assert epochs(directory) == [1, 2, 3] and status(directory) == "complete"
    assert results_of(directory) == undisturbed
    assert [step for step, _ in scalars(directory)] == [1, 2, 3]
    assert same(scalars(directory), val_accs(directory))
    client, runs = mlflow_runs(results)
    assert len(runs) == 1, runs
    assert same(history(client, runs[0]), val_accs(directory))
    assert client.get_run(runs[0].info.run_id).info.status == "FINISHED"


def test_a_stop_while_the_loggers_start_is_held_to_the_first_step_and_resumed(tmp_path, undisturbed):
    """SIGTERM as soon as metrics.jsonl says the run has set out (MLflow still opening its store):
    the signal is held like one in training, so the run saves its position after its first step
    and stops saying so, and the relaunch resumes there to the numbers of an undisturbed run. (A
    signal that reached its previous handler here would end the process with nothing saved.)"""
    results = tmp_path / "results"
    args = [*ARGS, "logger=mlflow", f"results_dir={results}"]
    directory = spec_of(results, *ARGS).run_directory()
    proc = launch(tmp_path, *args)
    wait_for(lambda: (directory / "metrics.jsonl").exists(), what="metrics.jsonl")
    os.kill(proc.pid, signal.SIGTERM)
    out, err = finish(proc)
    assert proc.returncode == -signal.SIGTERM, out + err  # held, then obeyed: ended by the signal
    assert f"{directory}: stopped: checkpoint saved in epoch 1 after step 1;" in out, out + err
    code, out, err = walign(tmp_path, *args)
    assert code == 0, out + err
    assert f"{directory}: resuming after epoch 0, step 1" in out, out
    assert results_of(directory) == undisturbed
    client, runs = mlflow_runs(results)
    assert len(runs) == 1 and same(history(client, runs[0]), val_accs(directory)), runs


def test_an_unreachable_mlflow_server_costs_one_warning_line_and_nothing_else(tmp_path, undisturbed):
    results = tmp_path / "results"
    code, out, err = walign(tmp_path, *ARGS, "logger=mlflow", "logger.mlflow.tracking_uri=http://127.0.0.1:9",
                            f"results_dir={results}")
    assert code == 0, out + err
    assert_clean(out, err)
    warnings = [line for line in err.splitlines() if line.startswith("walign: warning: logger mlflow failed")]
    assert len(warnings) == 1 and "the run goes on without it" in warnings[0], err
    assert [line for line in err.splitlines() if line not in warnings] == [], err
    assert results_of(spec_of(results, *ARGS).run_directory()) == undisturbed


def test_a_logger_whose_package_is_missing_is_one_line_before_anything_is_written(tmp_path):
    """Simulated: sitecustomize marks the package absent (sys.modules[name] = None)."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['mlflow'] = None\n")
    code, out, err = walign(tmp_path, *ARGS, "logger=[tensorboard,mlflow]", f"results_dir={tmp_path / 'results'}",
                            env=environment(PYTHONPATH=str(hide)))
    assert code == 2 and out == "", out + err
    assert err.splitlines() == ["walign: error: logger=mlflow needs the mlflow package, which is not installed: "
                                "pip install 'walign[mlflow]' (or pip install -e '.[mlflow]')"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hide"]


def test_three_runs_in_one_process_each_get_their_own_logger_runs(tmp_path):
    """launcher=local with one process: three runs one after another in one process (a packed
    task), each with its own TensorBoard folder and MLflow run, holding its own epochs only."""
    results = tmp_path / "results"
    code, out, err = walign(tmp_path, "-m", "launcher=local", "hydra.launcher.processes=1", *FAST, "epochs=2",
                            "width=4,6,8", "logger=[tensorboard,mlflow]", f"results_dir={results}")
    assert code == 0, out + err
    assert "walign local: 3 runs in 1 processes" in out
    client, runs = mlflow_runs(results)
    assert len(runs) == 3
    by_name = {run.info.run_name: run for run in runs}
    for width in (4, 6, 8):
        directory = spec_of(results, *FAST, "epochs=2", f"width={width}").run_directory()
        assert same(scalars(directory), val_accs(directory))
        run = by_name[directory.name]
        assert same(history(client, run), val_accs(directory))
        assert run.data.params["width"] == str(width)
    assert len({run.info.experiment_id for run in runs}) == 1  # one experiment per launch


@pytest.mark.skipif(sys.modules.get("wandb") is None and __import__("importlib").util.find_spec("wandb") is None,
                    reason="wandb is not installed here (pip install -e '.[wandb]'); its logger is not tested")
def test_wandb_offline_resumes_the_same_run_after_a_stop(tmp_path, undisturbed):
    """logger=wandb (offline): stopped after epoch 1 and relaunched, the run keeps one W&B id, the
    sync command is printed, and the run's numbers are those of a run without loggers."""
    results = tmp_path / "results"
    args = [*ARGS, "logger=wandb", f"results_dir={results}"]
    directory = spec_of(results, *ARGS).run_directory()
    proc = launch(tmp_path, *args, env=environment(WANDB_SILENT="true"))
    seen = read_until(proc, r"\] epoch 1/3 ")
    wait_for(lambda: (directory / "checkpoint.pt").exists(), what="the first checkpoint")
    kept = json.loads((directory / "loggers.json").read_text())["wandb"]["id"]
    proc.send_signal(signal.SIGTERM)
    finish(proc, before=seen)
    code, out, err = walign(tmp_path, *args, env=environment(WANDB_SILENT="true"))
    assert code == 0, out + err
    state = json.loads((directory / "loggers.json").read_text())["wandb"]
    assert state == {"id": kept, "last_epoch": 3}
    assert "wandb sync" in out
    assert len(list((directory / "wandb").glob(f"offline-run-*-{kept}"))) == 2  # one per process, one W&B run
    assert results_of(directory) == undisturbed
