"""GPU tests of compile=true (walign/compiled.py): what only a GPU exercises. Run with
``pytest -m cuda`` on a GPU machine (benchmarks/gpu_check.sh does); skipped without one.

On CUDA a compiled step is captured as a CUDA graph (torch.compile's "reduce-overhead" mode), its
outputs belong to the graph and are overwritten by the next replay, and Adam becomes capturable
(its step count and a tensor lr on the device). tests/test_compile.py checks every rule's
compiled arithmetic on the CPU; here a few rules that stand for the ways a step is built (plain
autograd with a graph break, autograd traced into the graph, a custom autograd function, direct
feedback, the RNN in float64) run compiled on the GPU beside their eager steps, and a compiled
run goes through ``main.py`` end to end, evaluation included.

The bound: after 10 steps at fp32 (TF32 off), every parameter within 1e-4 of the network's
largest weight of the eager one (float64: 1e-10), and each loss within the same relative bound.
That is ten times the CPU's float32 bound: on the GPU the compiled and the eager step may also
run different convolution and reduction kernels (cuDNN against Triton), each rounding its own way.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_compile import assert_follows_eager
from walign import precision

ROOT = Path(__file__).resolve().parents[1]
BOUND = {torch.float32: 1e-4, torch.float64: 1e-10}
pytestmark = pytest.mark.cuda
if not torch.cuda.is_available():  # one summary line for the whole file
    pytest.skip("no CUDA device: these GPU tests run with `pytest -m cuda` on a GPU machine",
                allow_module_level=True)


@pytest.fixture
def gpu():
    """The GPU, at true float32 (TF32 off for matmuls and convolutions)."""
    precision.configure("fp32", "cuda")
    return torch.device("cuda")


@pytest.mark.parametrize("name, family, optimizer", [
    ("normal", "cnn", "sgd"), ("align_ada", "cnn", "sgd"), ("fa", "cnn", "sgd"), ("dfa", "cnn", "sgd"),
    ("align_zero", "cnn", "adam"), ("normal", "rnn", "sgd"), ("align_ada", "rnn", "sgd")])
def test_compiled_steps_on_the_gpu_follow_eager_steps(name, family, optimizer, gpu):
    """test_compile's comparison (10 steps; under Adam the weights only), on the GPU, at BOUND."""
    assert_follows_eager(name, family, optimizer, gpu, BOUND)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_compiled_embedded_run_completes_on_the_gpu(optimizer, tmp_path, gpu):
    """main.py with compile=true on the GPU: training steps and evaluation through CUDA graphs
    (Adam capturable), every epoch recorded, the summary naming the compile and its seconds."""
    args = ["device=cuda", "compile=true", "rule=align_ada", "width=8", "epochs=2", f"optimizer={optimizer}",
            *(["lr=0.001"] if optimizer == "adam" else []), "progress=none", f"results_dir={tmp_path}"]
    done = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, text=True, capture_output=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "complete: best validation accuracy" in done.stdout
    (directory,) = [p.parent for p in tmp_path.rglob("summary.json")]
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["compile"] is True and summary["compile_seconds"] > 0 and summary["epochs_done"] == 2
    assert summary["device"] == torch.cuda.get_device_name(gpu)
    records = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(0 <= r["val_acc"] <= 1 and 0 <= r["test_acc"] <= 1 for r in records)
