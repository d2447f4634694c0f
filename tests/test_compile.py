"""compile=true (walign/compiled.py): every rule's compiled step, and evaluation's compiled
forward, follow their eager versions; an lr sweep reuses the compiled code and a batch of another
shape compiles nothing; compile is part of a run's identity only when true; a compiled run killed,
or stopped by a signal inside an epoch, resumes to the uninterrupted compiled run's numbers; and
what cannot be compiled is refused in one line.

The bound. Compiled kernels fuse and reorder float sums, so compiled and eager parameters differ by
rounding, which the steps then carry along. After 10 SGD steps we require, for every parameter,
max |compiled - eager| <= 1e-5 * (largest |parameter| of the network) in float32 (the CNN rules,
as they train) and <= 1e-10 of it in float64 (the Add-task RNN, as it trains); the losses of
every step agree to the same relative bound. The scale is the network's largest weight, not each
tensor's own: the batch norm's shift parameters sit near 1e-9, where an absolute rounding of
1e-9 would be a relative error of one.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

from walign import checkpoint
from walign.compiled import CompiledForward, CompiledStep, CompileError, make_step
from walign.nets import ConvNet, NetSpec
from walign.rnn import AddRNN
from walign.rules import RULES, build_rule
from walign.train import make_optimizer

REPO = Path(__file__).resolve().parents[1]
STEPS = 10
BOUND = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(scope="module")
def example_rule():
    """The example plugin rule (examples/my_rule), registered for this module only."""
    before = {name: dict(families) for name, families in RULES.items()}
    spec = importlib.util.spec_from_file_location("my_rule_example", REPO / "examples/my_rule/my_rule.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    yield "my_rule"
    RULES.clear()
    RULES.update(before)


CPU = torch.device("cpu")


def batches(family: str, dtype: torch.dtype, device: torch.device = CPU):
    g = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        if family == "cnn":
            x = torch.rand(8, 3, 8, 8, generator=g)
            y = F.one_hot(torch.randint(0, 10, (8,), generator=g), 10) - 0.1
        else:
            x = torch.randint(0, 2, (4, 7), generator=g)
            y = torch.rand(4, 7, generator=g)
        yield x.to(device, dtype), y.to(device, dtype)


def train_steps(name: str, family: str, compiled: bool, optimizer: str = "sgd", device: torch.device = CPU):
    """The parameters after STEPS steps on ``device`` (copied to the CPU), and each step's loss."""
    torch.manual_seed(0)
    if family == "cnn":
        net, dtype, lr = ConvNet(NetSpec("cifar", 6, in_channels=3, image_size=8)), torch.float32, 0.5
    else:
        net, dtype, lr = AddRNN(6, 4).double(), torch.float64, 0.01
    rule = build_rule(name, net.to(device), 5)
    opt = make_optimizer(optimizer, rule.params, 1e-3 if optimizer == "adam" else lr, compiled=compiled)
    step = CompiledStep(rule, opt, device) if compiled else make_step(rule, opt)
    # float() reads each loss at once (on CUDA the next replay of the graph overwrites its output)
    losses = [float(step(x, y)) for x, y in batches(family, dtype, device)]
    return [p.detach().cpu().clone() for p in rule.params], losses, dtype


def compiled_cases():
    names = sorted(RULES)
    return [pytest.param(name, family, id=f"{name}-{family}") for name in names for family in sorted(RULES[name])]


def assert_follows_eager(name: str, family: str, optimizer: str = "sgd", device: torch.device = CPU,
                         bound: dict = BOUND) -> None:
    eager, eager_losses, dtype = train_steps(name, family, False, optimizer, device)
    compiled, compiled_losses, _ = train_steps(name, family, True, optimizer, device)
    scale = max(p.abs().max().item() for p in eager)
    assert all(torch.isfinite(p).all() for p in eager) and scale > 0
    # Adam divides each step by the gradient's own size, so the conv biases, whose gradient is
    # rounding noise (the per-element batch norm after them removes them), take full-size steps in
    # directions the rounding picks: under Adam only the weights are compared.
    kept = [i for i, p in enumerate(eager) if optimizer == "sgd" or p.dim() >= 2]
    moved = {i: float((eager[i] - compiled[i]).abs().max()) for i in kept
             if (eager[i] - compiled[i]).abs().max() > bound[dtype] * scale}
    assert moved == {}, f"parameters of {name} ({family}, {optimizer}) beyond {bound[dtype]:g} x {scale:.3g}: {moved}"
    for a, b in zip(eager_losses, compiled_losses):
        assert abs(a - b) <= bound[dtype] * max(abs(a), 1e-12), (eager_losses, compiled_losses)


@pytest.mark.parametrize("name, family", compiled_cases())
def test_compiled_steps_follow_eager_steps(name, family):
    assert_follows_eager(name, family)


def test_a_plugin_rules_compiled_steps_follow_its_eager_steps(example_rule):
    assert_follows_eager(example_rule, "cnn")


def test_sgd_with_a_tensor_lr_is_bit_identical_to_a_float_lr():
    """The lr is a tensor only when compiled; for SGD that changes no number."""
    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        rule = build_rule("align_ada", ConvNet(NetSpec("cifar", 4, in_channels=3, image_size=8)), 5)
        step = make_step(rule, make_optimizer("sgd", rule.params, 2.0, compiled=compiled))
        for x, y in batches("cnn", torch.float32):
            step(x, y)
        results.append([p.detach().clone() for p in rule.params])
    assert all(torch.equal(a, b) for a, b in zip(*results))


def compiled_normal_step(lr: float, tensor_lr: bool = True) -> CompiledStep:
    torch.manual_seed(0)
    rule = build_rule("normal", ConvNet(NetSpec("cifar", 4, in_channels=3, image_size=8)), 5)
    return CompiledStep(rule, make_optimizer("sgd", rule.params, lr, compiled=tensor_lr), CPU)


def test_runs_differing_only_in_lr_reuse_the_compiled_code(tmp_path, monkeypatch):
    """The lr is data in the graph: the second run of an lr sweep finds every graph in inductor's
    cache (with a float lr its optimizer graph would be compiled again)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    x, y = next(batches("cnn", torch.float32))
    compiled_normal_step(0.5)(x, y)
    counters.clear()
    compiled_normal_step(2.0)(x, y)
    assert counters["inductor"]["fxgraph_cache_hit"] > 0
    assert counters["inductor"]["fxgraph_cache_miss"] == 0, dict(counters["inductor"])


def test_a_batch_of_another_shape_runs_eagerly_without_recompiling():
    """A data loader's short last batch takes the eager step: no new graph, and it still trains."""
    step = compiled_normal_step(0.5)
    x, y = next(batches("cnn", torch.float32))
    step(x, y)
    graphs = counters["stats"]["unique_graphs"]
    before = [p.detach().clone() for p in step.rule.params]
    loss = step(x[:5], y[:5])
    assert counters["stats"]["unique_graphs"] == graphs
    assert torch.isfinite(loss) and any(not torch.equal(a, b) for a, b in zip(before, step.rule.params))


@pytest.mark.parametrize("family", ["cnn", "rnn"])
def test_the_compiled_evaluation_forward_follows_the_eager_forward(family):
    """Evaluation's compiled forward gives the network's outputs (same bound as the steps), for
    its first batch shape and, eagerly, for another."""
    torch.manual_seed(0)
    net = ConvNet(NetSpec("cifar", 6, in_channels=3, image_size=8)) if family == "cnn" else AddRNN(6, 4).double()
    net = build_rule("normal", net, 5).net  # initialized as for training
    dtype = torch.float32 if family == "cnn" else torch.float64
    forward = CompiledForward(net, CPU)
    with torch.no_grad():
        for x, _ in list(batches(family, dtype))[:3]:
            other = x[:3] if family == "cnn" else x[:, :5]  # fewer images; shorter sequences (one state per slot)
            for inputs in (x, other):
                eager, compiled = net(inputs), forward(inputs)
                assert compiled.shape == eager.shape and eager.abs().max() > 0
                assert (compiled - eager).abs().max() <= BOUND[dtype] * eager.abs().max()
    assert forward.compile_seconds > 0 and forward.shape == x.shape


# ----------------------------------------------------------------------------- runs
ARGS = ["rule=normal", "width=4", "epochs=3", "compile=true", "progress=lines", "eval_test=false",
        "keep_checkpoint=true"]


def main_py(*args, env=None, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "main.py", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def only_run(results: Path) -> Path:
    (found,) = [p.parent for p in results.rglob("config.yaml") if ".hydra" not in p.parts]
    return found


def results_of(directory: Path):
    metrics = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((directory / "summary.json").read_text())
    params = checkpoint.read(directory / checkpoint.CHECKPOINT)["rule"]["params"]
    drop = ("seconds", "wall_seconds", "compile_seconds", "load_seconds", "eval_seconds", "resumed_after_epoch",
            "run_dir", "device")
    return ([{k: v for k, v in m.items() if k not in drop} for m in metrics],
            {k: v for k, v in summary.items() if k not in drop}, params)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the compiled run, never stopped."""
    results = tmp_path_factory.mktemp("whole")
    whole = main_py(*ARGS, f"results_dir={results}")
    out, _ = whole.communicate(timeout=900)
    assert whole.returncode == 0, out
    reference = results_of(only_run(results))
    assert reference[1]["compile"] is True
    return reference


def after_first_epoch(results: Path, proc) -> None:
    """Wait until ``proc``'s run has recorded and checkpointed its first epoch."""
    deadline = time.time() + 900
    while proc.poll() is None and time.time() < deadline:
        found = list(results.rglob("metrics.jsonl"))
        if found and found[0].read_text().count("\n") >= 1 and (found[0].parent / "checkpoint.pt").exists():
            return
        time.sleep(0.05)


def test_a_killed_compiled_run_resumes_to_the_uninterrupted_compiled_result(tmp_path, uninterrupted):
    reference = uninterrupted
    killed = main_py(*ARGS, f"results_dir={tmp_path / 'killed'}")
    after_first_epoch(tmp_path / "killed", killed)
    killed.send_signal(signal.SIGKILL)
    out, _ = killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{out}"

    again = main_py(*ARGS, f"results_dir={tmp_path / 'killed'}")
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out
    assert "resuming after epoch" in out
    metrics, summary, params = results_of(only_run(tmp_path / "killed"))
    assert metrics == reference[0]
    assert summary == reference[1]
    assert all(torch.equal(a, b) for a, b in zip(params, reference[2]))


def test_a_compiled_run_stopped_mid_epoch_resumes_from_that_step_to_the_same_result(tmp_path, uninterrupted):
    """SIGTERM after the first epoch: the compiled run saves its place inside the next epoch and
    ends; started again, it compiles afresh and continues from that step to the reference."""
    stopped = main_py(*ARGS, f"results_dir={tmp_path}")
    after_first_epoch(tmp_path, stopped)
    stopped.send_signal(signal.SIGTERM)
    out, _ = stopped.communicate(timeout=300)
    assert stopped.returncode == -signal.SIGTERM, out
    saved = re.search(r"stopped: checkpoint saved in epoch (\d+) after step (\d+)", out)
    assert saved and int(saved.group(2)) > 0, out

    again = main_py(*ARGS, f"results_dir={tmp_path}")
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out
    assert f"resuming after epoch {int(saved.group(1)) - 1}, step {saved.group(2)}" in out
    metrics, summary, params = results_of(only_run(tmp_path))
    assert metrics == uninterrupted[0]
    assert {k: v for k, v in summary.items() if k != "resumed_after_step"} == uninterrupted[1]
    assert all(torch.equal(a, b) for a, b in zip(params, uninterrupted[2]))


def test_compile_true_is_a_run_of_its_own_and_compile_false_keeps_the_old_directory():
    """compile enters a run's identity only when true: runs made before the option keep their
    directories, and a compiled run never resumes or skips as the eager one."""
    from walign.spec import RunSpec
    eager = RunSpec(dataset="embedded", rule="normal", width=8, lr=1.0, epochs=2, seed=0, batch_size=10)
    assert "compile" not in eager.identity()
    compiled = dataclasses.replace(eager, compile=True)
    assert compiled.identity() == {**eager.identity(), "compile": True}
    assert compiled.run_directory() != eager.run_directory()


def one_line_refusal(tmp_path, *args, env=None) -> str:
    proc = main_py(f"results_dir={tmp_path / 'results'}", "progress=none", "compile=true", *args, env=env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "Traceback" not in out, out
    lines = [line for line in out.strip().splitlines() if not line.startswith("walign: warning")]
    assert len(lines) == 1, out
    assert not (tmp_path / "results" / "embedded").exists()  # nothing was trained or recorded
    return lines[0]


def test_a_rule_that_cannot_be_compiled_is_refused_in_one_line(tmp_path):
    (tmp_path / "stubborn.py").write_text(
        "from walign.rules import Rule, mse, register\n"
        "from walign.nets import initialize\n"
        "@register('stubborn', 'cnn')\n"
        "class Stubborn(Rule):\n"
        "    passes = Rule.passes\n"
        "    compile_refusal = 'its step reads values on the host'\n"
        "    @classmethod\n"
        "    def create(cls, net, seed):\n"
        "        initialize(net, seed)\n"
        "        return cls(net)\n"
        "    def pseudo_gradients(self, x, target):\n"
        "        return self.exact(mse(self.net(x), target))\n")
    line = one_line_refusal(tmp_path, "+rule_module=stubborn", "rule=stubborn", env={"PYTHONPATH": str(tmp_path)})
    assert "rule stubborn (cnn) cannot be compiled: its step reads values on the host" in line
    assert "compile=false" in line


def test_a_step_differentiating_at_its_own_tensors_without_traced_autograd_names_the_setting(monkeypatch):
    """Align-ada differentiates at the frozen network's layer outputs; without
    compile_traces_autograd its compiled step cannot work, and the error says what to set."""
    from walign.rules.cnn import AlignAda
    monkeypatch.setattr(AlignAda, "compile_traces_autograd", False)
    rule = build_rule("align_ada", ConvNet(NetSpec("cifar", 6, in_channels=3, image_size=8)), 5)
    step = CompiledStep(rule, make_optimizer("sgd", rule.params, 0.5, compiled=True), torch.device("cpu"))
    x, y = next(batches("cnn", torch.float32))
    with pytest.raises(CompileError) as raised:
        step(x, y)
    message = str(raised.value)
    assert "rule align_ada cannot be compiled" in message and "compile_traces_autograd = True" in message
    assert "\n" not in message


def test_compile_without_a_cxx_compiler_on_the_cpu_is_refused_in_one_line(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    line = one_line_refusal(tmp_path, "device=cpu", env={"PATH": str(empty), "CXX": ""})
    assert "compile=true on the cpu needs a C++ compiler" in line


def test_compile_is_checked_as_true_or_false(tmp_path):
    proc = main_py(f"results_dir={tmp_path}", "compile=maybe")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "compile must be true or false, got 'maybe'" in out, out
