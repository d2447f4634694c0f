"""Device hygiene: a training step never waits for the device and never leaves it.

On a GPU, whatever reads a value on the host (``.item()``, ``float(t)``, ``bool(t)``, ``tolist``,
numpy conversion, an op whose output shape depends on the data such as ``nonzero``) blocks the
host until every queued kernel has run, and a copy between devices stalls too. A walign step
(``rule.pseudo_gradients`` + ``optimizer.step``) has none of these, so the host can queue steps
ahead of the GPU; and it creates no tensor of another dtype or device than the run's (float32 for
the CNNs, float64 for the Add-task RNN, on the parameters' device).

These tests record every ATen op (a TorchDispatchMode) of real steps of every registered rule, and
of one whole epoch of walign.train.train. On the CPU the device checks compare with the
parameters' device like on a GPU, so they hold there trivially; ``pytest -m cuda`` runs the same
tests on a GPU, where they bite.

Per epoch the bound is 3 host reads: the epoch's training loss, the validation accuracy and the
test accuracy (the Add task: training loss, test loss, evaluation-train loss). A scored epoch of
gd_wstar adds its scoring's reads, a fixed number per scored layer (``SCORING_READS_PER_LAYER``),
not per step. The epoch's batch order goes to the device once per split and epoch (training,
validation, test), never once per step.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from walign.datasets import ImageSplits, TensorSplit
from walign.nets import ConvNet, NetSpec
from walign.datasets.add import AddTask
from walign.rnn import AddRNN
from walign.rules import build_rule, rules_for
from walign.train import TrainConfig, TrainState, make_optimizer, train

ROOT = str(Path(__file__).resolve().parents[1])
# ops whose result the host has to wait for (values read, or shapes that depend on values)
HOST_READS = {"_local_scalar_dense", "item", "is_nonzero", "equal", "allclose", "nonzero", "masked_select",
              "_unique", "_unique2", "unique_dim", "unique_consecutive", "repeat_interleave"}
SCORING_READS_PER_LAYER = 3  # operator_scores' tolist, kernel_score's `norm > 0` and float()

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(autouse=True)
def skip_cuda_without_a_gpu(request):
    """The cuda variants need a GPU (one summary line for all of them when there is none)."""
    callspec = getattr(request.node, "callspec", None)
    if callspec and callspec.params.get("device") == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device: the GPU variants run with `pytest -m cuda` on a GPU machine")


@dataclass
class Event:
    op: str
    where: str  # the innermost line of the repository that caused it (host reads and copies)
    tensors: list = field(default_factory=list)  # (dtype, device, role) of inputs and outputs


def walign_frame() -> str:
    """The innermost line of this repository (walign/ or a test's own rule) behind the op."""
    frames = [f for f in traceback.extract_stack()[:-2]
              if f.filename.startswith(ROOT) and "site-packages" not in f.filename]
    if not frames:
        return "outside the repository"
    f = frames[-1]
    return f"{f.filename[len(ROOT) + 1:]}:{f.lineno} ({f.name})"


class Recorder(TorchDispatchMode):
    """Every ATen op with its tensors' dtypes and devices; host reads and numpy conversions with
    the line that caused them; and every ``Tensor.to`` of a 1-D int64 tensor (an index order)."""

    def __init__(self):
        super().__init__()
        self.events: list[Event] = []
        self.index_moves: list[str] = []
        self.saved = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        tensors = [(t.dtype, t.device, "in") for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        tensors += [(t.dtype, t.device, "out") for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        self.events.append(Event(name, walign_frame() if name in HOST_READS or name in ("_to_copy", "copy_") else "",
                                 tensors))
        return out

    def __enter__(self):
        recorder = self
        for attr in ("numpy", "tolist", "__array__"):
            original = getattr(torch.Tensor, attr)
            self.saved[attr] = original

            def host(self_, *a, __original=original, __attr=attr, **k):
                recorder.events.append(Event(f"Tensor.{__attr}", walign_frame()))
                return __original(self_, *a, **k)
            setattr(torch.Tensor, attr, host)
        original_to = torch.Tensor.to
        self.saved["to"] = original_to

        def to(self_, *a, **k):
            moved = original_to(self_, *a, **k)
            if self_.dtype == torch.int64 and self_.dim() == 1:
                recorder.index_moves.append(f"{self_.device}->{moved.device} at {walign_frame()}")
            return moved
        torch.Tensor.to = to
        return super().__enter__()

    def __exit__(self, *exc):
        for attr, original in self.saved.items():
            setattr(torch.Tensor, attr, original)
        return super().__exit__(*exc)

    def host_reads(self) -> list[str]:
        return [f"{e.op} at {e.where}" for e in self.events if e.op in HOST_READS or e.op.startswith("Tensor.")]


def step_violations(events: list[Event], device: torch.device, dtype: torch.dtype) -> list[str]:
    """What a step must not do: read on the host, touch another device, create another float dtype."""
    found = []
    for e in events:
        if e.op in HOST_READS or e.op.startswith("Tensor."):
            found.append(f"host read: {e.op} at {e.where}")
        for t_dtype, t_device, role in e.tensors:
            if t_device != device:
                found.append(f"{e.op} {role}put on {t_device}, the run is on {device} ({e.where or 'no repository frame'})")
            if role == "out" and t_dtype.is_floating_point and t_dtype != dtype:
                found.append(f"{e.op} creates {t_dtype}, the run is {dtype}")
    return found


def cnn_case(name, device, **options):
    torch.manual_seed(0)
    net = ConvNet(NetSpec("cifar", 4, image_size=8)).to(device)
    rule = build_rule(name, net, 99, **options)
    x = torch.rand(10, 3, 8, 8, device=device)
    y = torch.nn.functional.one_hot(torch.arange(10, device=device) % 10, 10).float() - 0.1
    return rule, x, y


def rnn_case(name, device):
    net = AddRNN(8, 50).double().to(device)
    rule = build_rule(name, net, 99)
    task = AddTask.load(device, sequences=150, length=10, train_size=100)
    x, y = next(iter(task.train.batches(np.random.RandomState(0), 50)))
    return rule, x, task.targets(y)


def record_steps(rule, x, y, optimizer="sgd", steps=2) -> Recorder:
    opt = make_optimizer(optimizer, rule.params, 0.01)
    with Recorder() as recorder:
        for _ in range(steps):
            step = rule.pseudo_gradients(x, y)
            for param, grad in zip(rule.params, step.grads):
                param.grad = grad
            opt.step()
    return recorder


def params_of(rule):
    p = rule.params[0]
    return p.device, p.dtype


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", rules_for("cnn"))
def test_cnn_steps_stay_on_the_device(name, device):
    rule, x, y = cnn_case(name, device)
    assert params_of(rule)[1] == torch.float32
    recorder = record_steps(rule, x, y)
    assert len(recorder.events) > 50  # the recorder saw the step
    assert step_violations(recorder.events, *params_of(rule)) == []


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", rules_for("rnn"))
def test_rnn_steps_stay_on_the_device(name, device):
    rule, x, y = rnn_case(name, device)
    assert params_of(rule)[1] == torch.float64
    recorder = record_steps(rule, x, y)
    assert len(recorder.events) > 50
    assert step_violations(recorder.events, *params_of(rule)) == []


class Injected(type(build_rule("normal", ConvNet(NetSpec("cifar", 4, image_size=8)), 1))):
    """Normal with one deliberate fault, to show that the checks catch it."""
    fault = "item"

    def pseudo_gradients(self, x, target):
        step = super().pseudo_gradients(x, target)
        if self.fault == "item" and step.loss.item() < 0:  # never true; the read is the point
            raise AssertionError
        if self.fault == "numpy":
            step.loss.detach().cpu().numpy()
        if self.fault == "float64":
            step.loss.double()
        return step


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fault, expected", [("item", "host read: _local_scalar_dense at tests/"),
                                             ("numpy", "host read: Tensor.numpy"),
                                             ("float64", "creates torch.float64")])
def test_an_injected_fault_is_caught(fault, expected, device):
    rule, x, y = cnn_case("normal", device)
    injected = Injected(rule.net)
    injected.fault = fault
    found = step_violations(record_steps(injected, x, y).events, *params_of(rule))
    assert len([f for f in found if expected in f]) == 2, found  # one per step


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.xfail(strict=True, reason=(
    "kept on purpose (docs/performance.md, On a GPU): eager Adam (not fused, not capturable) keeps "
    "its step count as a float32 tensor on the host and reads it every step; fused or capturable "
    "Adam reads nothing but rounds the bias correction differently, which would move pinned "
    "numbers; compile=true on CUDA uses capturable Adam"))
def test_adam_steps_stay_on_the_device(device):
    rule, x, y = cnn_case("align_zero", device)
    assert step_violations(record_steps(rule, x, y, optimizer="adam").events, *params_of(rule)) == []


def tiny_images(device, sizes=(40, 20, 20)) -> ImageSplits:
    g = torch.Generator().manual_seed(0)

    def split(n):
        return TensorSplit(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g),
                           torch.randint(0, 10, (n,), generator=g), device)
    return ImageSplits("tiny", *(split(n) for n in sizes), 10, 3, 8, "cifar")


def one_epoch(rule, data, batch_size):
    with Recorder() as recorder:
        train(TrainState(rule, TrainConfig(1, 0.01, batch_size)), data, lambda record: None)
    return recorder


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, options, scored_layers", [
    ("normal", {}, 0), ("align_ada", {}, 0),
    ("gd_wstar", {"score_epochs": [1], "iterations": 2, "probes": 3}, 7)])
def test_a_cnn_epoch_reads_the_host_a_bounded_number_of_times(name, options, scored_layers, device):
    data = tiny_images(device)  # 40 training images at batch 10: 4 steps; 20 validation, 20 test
    rule, _, _ = cnn_case(name, device, **options)
    recorder = one_epoch(rule, data, 10)
    reads = recorder.host_reads()
    assert len(reads) == 3 + SCORING_READS_PER_LAYER * scored_layers, reads
    # the batch order goes to the device once per split (training, validation, test), not per step
    assert len(recorder.index_moves) == 3, recorder.index_moves
    assert all("walign/datasets/splits.py" in m and "(batches)" in m for m in recorder.index_moves)
    if torch.device(device).type == "cuda":
        uploads = [e for e in recorder.events if e.op == "_to_copy" and any(
            d == torch.int64 and dev.type == "cpu" for d, dev, role in e.tensors if role == "in")]
        assert len(uploads) == 3, [e.where for e in uploads]


@pytest.mark.parametrize("device", DEVICES)
def test_an_rnn_epoch_reads_the_host_three_times(device):
    task = AddTask.load(device, sequences=250, length=10, train_size=200)  # 4 steps of 50
    rule = build_rule("align_ada", AddRNN(8, 50).double().to(device), 99)
    recorder = one_epoch(rule, task, 50)
    assert len(recorder.host_reads()) == 3, recorder.host_reads()
    assert len(recorder.index_moves) == 3, recorder.index_moves  # training, test, evaluation-train


@pytest.mark.parametrize("device", DEVICES)
def test_targets_need_no_host_read(device):
    data = tiny_images(device)
    labels = data.train.labels[:10]
    with Recorder() as recorder:
        data.targets(labels)
    assert recorder.host_reads() == []
