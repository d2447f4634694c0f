"""A newcomer's first hour (issue 37), with real commands: `--help` names no run folder whatever
results/ holds; a sweep value list that ends with a comma, and a key the data set does not have,
are one line with a hint that works; `walign status` counts CPU runs in CPU-hours; its --help is
plain text; a torchvision that does not match torch is one line."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from walign.datasets.splits import ImageSplits
from walign.runs import run_dir

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "main.py")


def main_py(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, MAIN, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def walign(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "walign"), *args], capture_output=True, text=True,
                          timeout=120)


def finished_run(results: Path, seed: int, device: str, wall: float) -> Path:
    """A complete run as walign leaves it, made on ``device``."""
    identity = {"dataset": "embedded", "rule": "normal", "width": 4, "lr": 5.0, "epochs": 1, "batch_size": 50,
                "seed": seed, "activation": "relu", "parameterization": "ntk", "optimizer": "sgd"}
    directory = run_dir(results, identity)
    directory.mkdir(parents=True)
    records = [{"epoch": 1, "train_loss": 0.1, "val_acc": 0.2, "test_acc": 0.2, "seconds": wall}]
    (directory / "metrics.jsonl").write_text(json.dumps(records[0]) + "\n")
    (directory / "config.yaml").write_text("width: 4\n")  # what once made Hydra list it as a config group
    (directory / "summary.json").write_text(json.dumps(
        {"status": "complete", **identity, "device": device, "epochs_done": 1, **ImageSplits.summarize(records),
         "wall_seconds": wall}))
    return directory


def test_help_names_no_run_folder_with_50_runs_in_results(tmp_path):
    """The repository's results/ with 50 run directories (what `python main.py` makes there):
    `python main.py --help` lists the config groups, and no line names a run or results/."""
    results = ROOT / "results"
    made = [finished_run(results / "walign-help-test", seed, "cpu (test)", 1.0) for seed in range(50)]
    try:
        done = main_py(ROOT, "--help")
    finally:
        import shutil
        shutil.rmtree(results / "walign-help-test")
    assert done.returncode == 0, done.stderr
    assert "sweeps: " in done.stdout and "dataset: " in done.stdout
    for directory in made:
        assert directory.name not in done.stdout
    assert not [line for line in done.stdout.splitlines() if "results/" in line or "walign-help-test" in line]


def test_a_sweep_value_list_ending_with_a_comma_is_one_line(tmp_path):
    done = main_py(tmp_path, "-m", "rule=normal", "width=8,", f"results_dir={tmp_path / 'results'}")
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "walign: error: cannot read 'width=8,': a value list ends with a comma (values are KEY=VALUE, a sweep "
        "KEY=V1,V2 with -m; see https://hydra.cc/docs/1.2/advanced/override_grammar/basic)"]
    assert list(tmp_path.iterdir()) == []


def test_a_key_the_data_set_lacks_names_the_data_sets_that_have_it(tmp_path):
    """No '+dataset.verify_md5' hint (a data set refuses keys it does not declare): the line names
    the data sets that have the key, and the hint's own command works."""
    done = main_py(tmp_path, "dataset.verify_md5=false", f"results_dir={tmp_path / 'results'}")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "walign: error: dataset embedded has no key 'verify_md5' (its keys: name, epochs, batch_size, lr); "
        "verify_md5 is a key of dataset cifar10, small_cifar10"]
    assert "+dataset" not in done.stderr
    followed = main_py(tmp_path, "dataset=cifar10", "dataset.verify_md5=false", f"data_root={tmp_path / 'none'}",
                       f"results_dir={tmp_path / 'results'}")
    assert followed.returncode == 2 and "CIFAR-10 not found" in followed.stderr  # the key is taken; the data is missing


def test_status_counts_cpu_runs_in_cpu_hours_and_gpu_runs_in_gpu_hours(tmp_path):
    results = tmp_path / "results"
    for seed in range(4):
        finished_run(results, seed, "cpu (vm, 2 threads, AVX512)", 900.0)
    done = walign("status", str(results))
    assert done.returncode == 0, done.stderr
    assert "GPU" not in done.stdout, done.stdout
    assert "  CPU-hours: 1.00 done" in done.stdout.splitlines()
    finished_run(results, 9, "NVIDIA H200", 1800.0)
    mixed = walign("status", str(results)).stdout
    assert "  GPU-hours: 0.50 done, 0.00 left; CPU-hours: 1.00 done" in mixed.splitlines(), mixed


def test_status_help_is_plain_text():
    done = walign("status", "--help")
    assert done.returncode == 0 and "``" not in done.stdout
    assert "walign status [RESULTS_DIR] [--watch [SECONDS]]: what became of the runs" in " ".join(done.stdout.split())


def test_a_torchvision_that_does_not_match_torch_is_one_line(tmp_path):
    """Simulated: a torchvision package whose import fails as a build for another torch does."""
    fake = tmp_path / "fake" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    done = main_py(tmp_path, "dataset=cifar10", f"data_root={tmp_path / 'data'}", f"results_dir={tmp_path / 'r'}",
                   env={"PYTHONPATH": str(tmp_path / "fake")})
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert re.fullmatch(r"walign: error: torchvision \S+ does not work with torch \S+ \(operator torchvision::nms "
                        r"does not exist\): the two must come from one PyTorch release; .*", line), line
    assert not (tmp_path / "r").exists()


def test_a_data_set_must_give_the_run_defaults_and_no_option_named_like_a_run_value():
    """Found writing a plugin from the docs: a config without lr ended every run in an
    interpolation traceback, and an option called seed silently left the run's identity."""
    import pytest

    from walign.datasets import DATASETS, register
    from walign.datasets.image import ImageDataSet
    for config, words in (({"epochs": 1, "batch_size": 10}, "must give lr"),
                          ({"epochs": 1, "batch_size": 10, "lr": 1.0, "seed": 3}, "option seed has the name")):
        with pytest.raises(ValueError, match=words):
            register("walign_test_bad")(type("Bad", (ImageDataSet,), {"config": config}))
        assert "walign_test_bad" not in DATASETS


def test_a_key_verify_md5_does_not_have_and_a_shape_that_refuses_are_one_line(tmp_path):
    done = main_py(tmp_path, "verify_md5.kmnist=false", "dataset=kmnist")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "walign: error: verify_md5 has no key 'kmnist' (its keys: cifar10); only those data sets check md5 sums "
        "(a plugin data set's own folder is added with +verify_md5.kmnist=...)"]
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_smoke_data.py"), str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    done = main_py(tmp_path, "dataset=small_cifar10", "dataset.train_size=null", f"data_root={tmp_path / 'data'}",
                   "verify_md5.cifar10=false", "width=4", "epochs=1", f"results_dir={tmp_path / 'results'}")
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == ["walign: error: dataset small_cifar10 needs dataset.train_size "
                                        "(e.g. 45, 150, ..., 45000)"]
