"""The Add task and the recurrent rules (docs/method.md §2.6, §3.5, §3.6, §6; Table 8)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from walign.app import execute
from walign.spec import RunSpec
from walign.datasets.add import AddTask, add_task
from walign.rnn import AddRNN, sequence_loss
from walign.rules import build_rule
from walign.train import TrainConfig, TrainState, train

REPO = Path(__file__).resolve().parents[1]
RNN_RULES = ["normal", "align_ada", "align_zero", "readout_only"]


def chance(y):
    """Loss of always predicting 0.5: sum over time of the mean over sequences."""
    return float(((y - 0.5) ** 2).mean(0).sum())


def test_faithful_generator_gives_the_papers_random_chance_losses():
    _, y = add_task("faithful")
    assert round(chance(y[:300]), 4) == 9.3585
    assert round(chance(y[300:]), 4) == 9.3119


def test_faithful_generator_wraps_delays_and_zeroes_whole_sequences():
    x, y = add_task("faithful")
    assert np.array_equal(y[0], np.full(100, 0.5))  # both terms zeroed for sequences 0 and 1
    assert np.array_equal(y[3], 0.5 + 0.5 * np.roll(x[3], 2))  # only the second term zeroed
    assert y[10, 0] == 0.5 + 0.5 * x[10, 98] - 0.25 * x[10, 95]  # circular delays


def test_clean_generator_is_eq_59():
    x, y = add_task("clean")
    assert np.all(y[:, 0] == 0.5) and np.all(y[:, 1] == 0.5)
    t = np.arange(5, 100)
    assert np.array_equal(y[:, t], 0.5 + 0.5 * x[:, t - 2] - 0.25 * x[:, t - 5])


# ------------------------------------------------------------------ hand-written reference
def unroll(net, x, state0):
    """Pre-activations p_t and states s_t (s_{-1} = S) of the RNN, as (T, B, n) stacks."""
    p, s, states = [], state0, []
    for t in range(x.shape[1]):
        pre = x[:, t, None] * net.w_in + s @ net.w_hh * net.scale + net.b_h
        s = torch.relu(pre)
        p.append(pre)
        states.append(s)
    return torch.stack(p), torch.stack(states)


@torch.no_grad()
def reference_align_ada(net, frozen, x, y, same_step=False):
    """docs/method.md §6: frozen adjoint G0_t, future-only feedback g_t, current masks for the local updates."""
    T, n = x.shape[1], net.hidden
    S = net.state0
    p, s = unroll(net, x, S)
    p0, _ = unroll(frozen, x, S)
    out = s @ net.w_out * net.scale + net.b_o  # (T, B)
    e = 2 * (out - y.T) / x.shape[0]
    G0 = [None] * T
    nxt = torch.zeros_like(S)
    for t in reversed(range(T)):
        G0[t] = frozen.w_out * e[t, :, None] * frozen.scale + nxt
        nxt = ((p0[t] > 0) * G0[t]) @ frozen.w_hh.T * frozen.scale
    grads = {k: torch.zeros_like(v) for k, v in net.named_parameters()}
    for t in range(T):
        future = ((p0[t + 1] > 0) * G0[t + 1]) @ frozen.w_hh.T * frozen.scale if t + 1 < T else torch.zeros_like(S)
        g = future + (frozen.w_out * e[t, :, None] * frozen.scale if same_step else 0)
        q = (p[t] > 0) * g
        prev = S if t == 0 else s[t - 1]
        grads["w_hh"] += prev.T @ q * net.scale
        grads["w_in"] += (x[:, t, None] * q).sum(0)
        grads["b_h"] += q.sum(0)
        grads["w_out"] += s[t].T @ e[t] * net.scale
        grads["b_o"] += e[t].sum()
    grads["state0"] = ((p0[0] > 0) * G0[0]) @ frozen.w_hh.T * frozen.scale
    return [grads[k] for k, _ in net.named_parameters()]


def tiny(seed=0, hidden=6, batch=4, length=7):
    net = AddRNN(hidden, batch).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (batch, length), generator=g).double()
    y = torch.rand(batch, length, generator=g, dtype=torch.float64)
    return net, x, y


def grads(rule, x, y):
    return rule.pseudo_gradients(x, y).grads


def perturb(rule, scale=0.3):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in rule.params:
            p.add_(torch.randn_like(p) * scale)


@pytest.mark.parametrize("same_step", [False, True])
def test_align_ada_matches_the_hand_written_updates_away_from_init(same_step):
    net, x, y = tiny()
    rule = build_rule("align_ada", net, 3, same_step=same_step)
    perturb(rule)
    for got, want in zip(grads(rule, x, y), reference_align_ada(rule.net, rule.frozen, x, y, same_step), strict=True):
        assert torch.allclose(got, want, atol=1e-12), (got - want).abs().max()


def test_at_step_zero_align_zero_and_align_ada_plus_same_step_equal_bptt_but_align_ada_does_not():
    net, x, y = tiny(seed=2)
    bptt = grads(build_rule("normal", AddRNN(6, 4).double(), 5), x, y)
    zero = grads(build_rule("align_zero", AddRNN(6, 4).double(), 5), x, y)
    plus = grads(build_rule("align_ada", AddRNN(6, 4).double(), 5, same_step=True), x, y)
    ada = grads(build_rule("align_ada", AddRNN(6, 4).double(), 5), x, y)
    for b, z, p in zip(bptt, zero, plus, strict=True):
        assert torch.allclose(z, b, atol=1e-12) and torch.allclose(p, b, atol=1e-12)
    names = [k for k, _ in net.named_parameters()]
    w_hh = names.index("w_hh")
    assert not torch.allclose(ada[w_hh], bptt[w_hh], atol=1e-6)  # the dropped same-step term
    assert torch.allclose(ada[names.index("w_out")], bptt[names.index("w_out")], atol=1e-12)


def test_align_zero_is_bptt_through_the_frozen_net_from_the_current_state():
    net, x, y = tiny(seed=4)
    rule = build_rule("align_zero", net, 1)
    perturb(rule)
    frozen = rule.frozen
    S = rule.net.state0.detach().clone().requires_grad_(True)
    with torch.no_grad():
        e = 2 * (rule.net(x) - y) / x.shape[0]
    inputs = [S if k == "state0" else p for k, p in frozen.named_parameters()]
    want = torch.autograd.grad(frozen(x, state0=S), inputs, grad_outputs=e)
    for got, w in zip(grads(rule, x, y), want, strict=True):
        assert torch.allclose(got, w, atol=1e-12)


def test_readout_only_trains_the_readout_and_the_initial_state_only():
    net, x, y = tiny(seed=6)
    rule = build_rule("readout_only", net, 2)
    got = dict(zip([k for k, _ in net.named_parameters()], grads(rule, x, y), strict=True))
    assert got["w_in"] is None and got["w_hh"] is None and got["b_h"] is None
    full = dict(zip([k for k, _ in net.named_parameters()],
                    torch.autograd.grad(sequence_loss(net(x), y), list(net.parameters())), strict=True))
    for k in ("w_out", "b_o", "state0"):
        assert torch.allclose(got[k], full[k], atol=1e-12)


def test_initial_weights_follow_the_released_draw_order():
    net = AddRNN(8)
    build_rule("normal", net, 99)
    rng = np.random.RandomState(99)
    assert np.array_equal(net.w_in.detach().numpy(), rng.randn(8).astype(np.float32))
    assert np.array_equal(net.w_hh.detach().numpy(), rng.randn(8, 8).astype(np.float32))
    assert np.array_equal(net.w_out.detach().numpy(), rng.randn(8).astype(np.float32))


@pytest.mark.parametrize("name", RNN_RULES)
def test_every_recurrent_rule_lowers_the_training_loss(name):
    task = AddTask.load("cpu")
    rule = build_rule(name, AddRNN(64).double(), 99)
    records = []
    train(TrainState(rule, TrainConfig(epochs=4, lr=0.001, batch_size=50, seed=99)), task, records.append)
    losses = [r["eval_train_loss"] for r in records]
    assert losses[-1] < 0.9 * losses[0], losses


def add_run(results_dir, rule, width, lr, epochs) -> RunSpec:
    """An Add-task run with the default (Table 8) data settings."""
    return RunSpec(dataset="add", rule=rule, width=width, lr=lr, epochs=epochs, batch_size=50, seed=99,
                   results_dir=str(results_dir), progress="none",
                   data_options={"generator": "faithful", "data_seed": 99, "sequences": 400, "length": 100,
                                 "train_size": 300, "precision": "float64"})


def test_a_diverging_run_keeps_its_best_losses(tmp_path):
    summary = execute(add_run(tmp_path, rule="normal", width=16, lr=0.013, epochs=30))
    assert summary["status"] == "diverged"
    records = [json.loads(l) for l in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    finite = [r["test_loss"] for r in records if r["test_loss"] is not None]
    assert finite and summary["min_test_loss"] == min(finite)
    assert summary["min_train_loss"] is not None and summary["epochs_done"] == len(records) < 30


def test_table_8_align_zero_width_16_reaches_the_papers_minimum_test_loss(tmp_path):
    """Regression pin: Align-zero at width 16 reaches its minimum near epoch 85 (Table 8: 2.211)."""
    summary = execute(add_run(tmp_path, rule="align_zero", width=16, lr=0.001, epochs=100))
    assert summary["status"] == "complete"
    assert abs(summary["min_test_loss"] - 2.211) < 0.001, summary["min_test_loss"]
    assert 75 <= summary["min_test_epoch"] <= 95


def test_a_cnn_rule_on_the_add_task_is_one_line_naming_the_rnn_rules(tmp_path):
    proc = subprocess.run([sys.executable, "main.py", "dataset=add", "rule=dfa", f"results_dir={tmp_path}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    for name in RNN_RULES:
        assert name in lines[0]
