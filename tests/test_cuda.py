"""GPU tests: the CUDA path computes what the CPU path computes. Run them on a GPU machine with
``pytest -m cuda`` (benchmarks/gpu_check.sh does); without a GPU every test here is skipped.

* one update of every rule (CNN rules, gd_wstar, RNN rules) on the GPU at fp32 (TF32 off) equals
  the CPU update from the same weights and batch, to float32 (RNN: float64) rounding;
* ``python main.py device=cuda`` and ``device=auto`` complete a short run and name the GPU;
* a run killed after an epoch and resumed on the GPU ends bit-identical to an uninterrupted GPU
  run. That needs deterministic kernels in both runs: ``torch.backends.cudnn.deterministic = True``,
  ``torch.backends.cudnn.benchmark = False``, ``torch.use_deterministic_algorithms(True)`` and
  ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (cuBLAS's reproducible workspace); ``deterministic_main``
  sets them around ``main.py``. Without them cuDNN may pick algorithms that accumulate in a
  varying order, and two uninterrupted runs already differ in the last bits;
* the alignment estimator on the GPU equals the CPU one on the same probes.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from walign import precision
from walign.alignment import combine, operator_terms, permuted, skipped_iterations
from walign.nets import ConvNet, NetSpec, same_padding
from walign.datasets.add import AddTask
from walign.rnn import AddRNN
from walign.rules import build_rule, rules_for
from walign.train import make_optimizer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.cuda
if not torch.cuda.is_available():  # one summary line for the whole file
    pytest.skip("no CUDA device: these GPU tests run with `pytest -m cuda` on a GPU machine",
                allow_module_level=True)


def operator_scores(changes, pairs, input_shape, stride, pads, iterations=100, probes=100, generator=None):
    """The released estimator for several (change, change) pairs of one layer sharing probes."""
    terms = operator_terms(changes, pairs, input_shape, stride, pads, iterations, probes, generator)
    return combine(terms, skipped_iterations([terms], "per_layer")[0])


@pytest.fixture(autouse=True)
def gpu():
    """The GPU, at true float32 (TF32 off for matmuls and convolutions)."""
    precision.configure("fp32", "cuda")
    return torch.device("cuda")


def one_update(rule, x, y, lr):
    """The parameters' change after one step of the training loop (pseudo-gradients + SGD)."""
    before = [p.detach().clone() for p in rule.params]
    step = rule.pseudo_gradients(x, y)
    for param, grad in zip(rule.params, step.grads):
        param.grad = grad
    make_optimizer("sgd", rule.params, lr).step()
    return [(p.detach() - b).cpu() for p, b in zip(rule.params, before)], step.loss.cpu()


def assert_same_update(cpu, gpu, rtol):
    (updates_cpu, loss_cpu), (updates_gpu, loss_gpu) = cpu, gpu
    torch.testing.assert_close(loss_gpu, loss_cpu, rtol=rtol, atol=0)
    scale = max(float(u.abs().max()) for u in updates_cpu)
    for a, b in zip(updates_gpu, updates_cpu):
        # bias updates under a per-element batch norm are ~0 up to rounding: compare on the step's scale
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("name", rules_for("cnn"))
def test_cnn_update_on_the_gpu_equals_the_cpu_update(name, gpu):
    options = {"score_epochs": [], "iterations": 2, "probes": 3} if name == "gd_wstar" else {}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(20, 3, 16, 16, generator=g)
    y = F.one_hot(torch.randint(0, 10, (20,), generator=g), 10).float() - 0.1
    results = []
    for device in ("cpu", gpu):
        net = ConvNet(NetSpec("cifar", 16, image_size=16)).to(device)
        rule = build_rule(name, net, 99, **options)
        results.append(one_update(rule, x.to(device), y.to(device), lr=1.0))
    assert_same_update(*results, rtol=1e-4)


@pytest.mark.parametrize("name", rules_for("rnn"))
def test_rnn_update_on_the_gpu_equals_the_cpu_update(name, gpu):
    results = []
    for device in ("cpu", gpu):
        task = AddTask.load(device, sequences=150, length=100, train_size=100)
        x, y = next(iter(task.train.batches(np.random.RandomState(0), 50)))
        rule = build_rule(name, AddRNN(32, 50).double().to(device), 99)
        results.append(one_update(rule, x, task.targets(y), lr=0.001))
    assert_same_update(*results, rtol=1e-9)


def test_alignment_estimator_on_the_gpu_equals_the_cpu_one_on_the_same_probes(gpu, monkeypatch):
    """The probes are drawn on the CPU for both devices (the CUDA generator draws other numbers),
    so the two estimates must agree to float32 rounding; the CUDA generator itself is checked on
    proportional changes, which score 1 whatever the probes."""
    g = torch.Generator().manual_seed(3)
    shape, stride = (8, 15, 15), 2  # an odd size: the SAME padding is asymmetric
    pads = same_padding(15, stride)
    pads = (pads[0], pads[1], pads[0], pads[1])
    d = torch.randn(16, 8, 3, 3, generator=g)
    d_star = d + 0.5 * torch.randn(16, 8, 3, 3, generator=g)
    changes = [d, d_star, permuted([d])[0]]
    real_randn = torch.randn
    scores = []
    for device in ("cpu", gpu):
        probes = torch.Generator().manual_seed(11)

        def randn(*size, generator=None, device=None, dtype=None, _probes=probes):
            return real_randn(*size, generator=_probes, dtype=dtype).to(device)
        monkeypatch.setattr(torch, "randn", randn)
        moved = [c.to(device) for c in changes]
        scores.append(operator_scores(moved, [(0, 1), (2, 1)], shape, stride, pads, iterations=5, probes=40))
        monkeypatch.setattr(torch, "randn", real_randn)
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-4)
    assert 0 < scores[0][0] < 1
    on_gpu = torch.Generator(device=gpu).manual_seed(0)
    same = operator_scores([d.to(gpu), 3 * d.to(gpu)], [(0, 1)], shape, stride, pads, 5, 40, on_gpu)
    assert abs(same[0] - 1) < 1e-5


# ------------------------------------------------------------------ real runs of main.py
DETERMINISTIC = """import runpy, sys, torch
torch.backends.cudnn.deterministic = True
torch.backends.cudnn.benchmark = False
torch.use_deterministic_algorithms(True)
sys.argv = ["main.py", *sys.argv[1:]]
runpy.run_path("main.py", run_name="__main__")
"""


def main_py(*args, deterministic=False, **popen):
    """``python main.py ARGS`` in the repository, optionally with deterministic GPU kernels."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    command = [sys.executable, "-c", DETERMINISTIC] if deterministic else [sys.executable, "main.py"]
    return subprocess.Popen([*command, *args], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, **popen)


def finish(proc, timeout=600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def run_directory(results: Path) -> Path:
    (found,) = [p.parent for p in results.rglob("config.yaml") if ".hydra" not in p.parts]
    return found


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_a_short_embedded_run_completes_on_the_gpu(device, tmp_path, gpu):
    out = finish(main_py(f"device={device}", "epochs=1", "width=8", "progress=none", f"results_dir={tmp_path}"))
    assert "complete: best validation accuracy" in out
    summary = json.loads((run_directory(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["epochs_done"] == 1
    assert summary["device"] == torch.cuda.get_device_name(gpu)  # device=auto chose the GPU


VOLATILE = ("seconds", "wall_seconds", "load_seconds", "eval_seconds", "resumed_after_epoch", "resumed_after_step",
            "run_dir", "device")


def stable(obj):
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def read_run(directory: Path):
    metrics = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((directory / "summary.json").read_text())
    state = torch.load(directory / "checkpoint.pt", map_location="cpu", weights_only=False)
    return stable(metrics), stable(summary), state


def test_a_killed_gpu_run_resumes_bit_identical(tmp_path, gpu):
    args = ["device=cuda", "rule=align_ada", "width=32", "epochs=12", "progress=lines", "keep_checkpoint=true",
            "eval_test=false"]
    finish(main_py(*args, f"results_dir={tmp_path / 'whole'}", deterministic=True))
    whole = read_run(run_directory(tmp_path / "whole"))

    killed = main_py(*args, f"results_dir={tmp_path / 'killed'}", deterministic=True)
    deadline, directory = time.time() + 300, None
    while time.time() < deadline and killed.poll() is None and directory is None:
        for metrics in (tmp_path / "killed").rglob("metrics.jsonl"):
            if metrics.read_text().count("\n") >= 1 and (metrics.parent / "checkpoint.pt").exists():
                directory = metrics.parent
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert directory is not None, "the run never finished an epoch"
    assert not (directory / "summary.json").exists(), "the run finished before it could be killed"
    done = torch.load(directory / "checkpoint.pt", map_location="cpu", weights_only=False)["epoch"]
    assert 1 <= done < 12

    out = finish(main_py(*args, f"results_dir={tmp_path / 'killed'}", deterministic=True))
    assert f"resuming after epoch {done}" in out
    assert re.findall(r"\] epoch (\d+)/12", out) == [str(e) for e in range(done + 1, 13)], out
    metrics, summary, state = read_run(directory)
    assert metrics == whole[0] and summary == whole[1]
    for a, b in zip(state["rule"]["params"], whole[2]["rule"]["params"]):
        assert torch.equal(a, b)
