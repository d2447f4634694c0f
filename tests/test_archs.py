"""Architectures as entries (walign/archs/): the ResNet and the MLP built in, what each rule needs of a
network, and the network owning its geometry. The ResNet's equality with biotorch's is in
tests/test_biotorch.py."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from test_rules import assert_same, batch, move_away_from_init, ref_align_ada, ref_align_zero, ref_last_layer, \
    ref_normal
from walign import cost
from walign.archs import ARCHS, CAPABILITIES
from walign.datasets import DataShape
from walign.errors import ConfigError
from walign.rules import RULES, build_rule, mse

REPO = Path(__file__).resolve().parents[1]
SHAPE = DataShape(0, 0, 0, 3, 8, 10, "cifar")


def make(arch: str, width: int = 6, shape: DataShape = SHAPE, parameterization: str = "ntk", **options):
    return ARCHS[arch].create(shape, width, 12, "relu", parameterization, options).double()


# ------------------------------------------------------------------ references on the MLP
def ref_feedback_mlp(net, feedback, x, y):
    """Value from W, input gradient through the feedback matrix, layer by layer (docs/method.md §5.5)."""
    from walign.nets import batch_stat_norm
    a = x.flatten(1)
    for l in range(net.depth):
        forward = a.detach() @ net.weights[l].t() * net.scales[l]
        back = a @ feedback[l].t() * net.scales[l]
        a = net.activation(batch_stat_norm(forward + net.biases[l] + back - back.detach()))
    back = a @ feedback[-1].t() * net.fc_scale
    logits = a.detach() @ net.fc_weight.t() * net.fc_scale + net.fc_bias + back - back.detach()
    return dict(zip(net.parameters(), torch.autograd.grad(mse(logits, y), list(net.parameters())), strict=True))


def ref_dfa_mlp(net, projections, x, y):
    """Layers cut apart; each hidden layer's output projected to the logits by D_l (docs/method.md §5.6)."""
    a, extra = x, 0
    for l in range(net.depth):
        a = net.activation(net.layer(l, a.detach()))
        proj = a @ projections[l].t()
        extra = extra + proj - proj.detach()
    logits = net.head(a.detach()) + extra
    return dict(zip(net.parameters(), torch.autograd.grad(mse(logits, y), list(net.parameters())), strict=True))


def mlp_reference(rule, x, y):
    net = rule.net
    if rule.name == "normal":
        return ref_normal(net, x, y)
    if rule.name == "align_zero":
        return ref_align_zero(net, rule.frozen, x, y)
    if rule.name == "align_ada":
        return ref_align_ada(net, rule.frozen, x, y)
    if rule.name in ("fa", "align_prop"):
        return ref_feedback_mlp(net, rule.feedback, x, y)
    if rule.name == "usf":
        return ref_feedback_mlp(net, [torch.sign(w.detach()) for w in net.feedback_weights()], x, y)
    if rule.name == "dfa":
        return ref_dfa_mlp(net, rule.projections, x, y)
    if rule.name == "last_layer":
        return ref_last_layer(net, x, y)
    raise AssertionError(rule.name)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("name", ["normal", "align_ada", "align_zero", "align_prop", "fa", "usf", "dfa", "last_layer"])
def test_every_rule_on_the_mlp_equals_its_reference_away_from_initialisation(name):
    rule = build_rule(name, make("mlp", depth=3), 7)
    move_away_from_init(rule)
    if hasattr(rule, "frozen"):
        assert not torch.equal(rule.net.weights[1], rule.frozen.weights[1])
    x, y = batch(seed=1)
    got = dict(zip(rule.params, rule.pseudo_gradients(x, y).grads, strict=True))
    assert any(g is not None for g in got.values())
    assert_same(got, mlp_reference(rule, x, y), rule.params)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("arch, name", [("mlp", "align_ada"), ("mlp", "align_zero"), ("mlp", "align_prop"),
                                        ("resnet20", "align_zero"), ("resnet20", "align_prop")])
def test_first_update_of_every_align_rule_equals_backprop_on_other_networks(arch, name):
    """At the initial weights the frozen network is the current one, whatever the network."""
    x, y = batch(seed=2)
    normal, rule = build_rule("normal", make(arch), 11), build_rule(name, make(arch), 11)
    got, want = rule.pseudo_gradients(x, y).grads, normal.pseudo_gradients(x, y).grads
    assert len(got) == len(want) == len(list(rule.net.parameters()))
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-12)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("name", ["usf", "brsf"])
def test_feedback_rules_on_the_resnet_differ_from_backprop_below_the_head(name):
    """Same initial weights as backprop (no interleaved draws): the head's bias gets the same
    gradient, the stem another (FA's and uSF's equality with biotorch is tests/test_biotorch.py)."""
    x, y = batch(seed=2)
    normal, rule = build_rule("normal", make("resnet20"), 11), build_rule(name, make("resnet20"), 11)
    got = dict(zip(rule.params, rule.pseudo_gradients(x, y).grads, strict=True))
    want = dict(zip(normal.params, normal.pseudo_gradients(x, y).grads, strict=True))
    assert torch.allclose(got[rule.net.fc_bias], want[normal.net.fc_bias])  # the head's bias: the error itself
    assert not torch.allclose(got[rule.net.weights[0]], want[normal.net.weights[0]])  # the stem: via feedback


# ------------------------------------------------------------------ the network owns its geometry
@pytest.mark.parametrize("arch, shape, options", [
    ("cifar", DataShape(0, 0, 0, 3, 32, 10, "cifar"), {}),
    ("kmnist", DataShape(0, 0, 0, 1, 28, 10, "kmnist"), {}),
    ("resnet20", DataShape(0, 0, 0, 3, 32, 10, "cifar"), {}),
    ("resnet20", DataShape(0, 0, 0, 3, 32, 10, "cifar"), {"depth": 32}),
    ("mlp", DataShape(0, 0, 0, 1, 28, 10, "kmnist"), {"depth": 4}),
])
def test_counted_forward_flops_and_weights_are_what_torch_counts_on_the_built_network(arch, shape, options):
    """walign/cost.py counts from the entry's geometry; torch's FlopCounterMode counts the
    convolutions and matrix products the built network actually runs."""
    net = ARCHS[arch].create(shape, 8, 4, "relu", "ntk", options)
    x = torch.randn(4, shape.channels, shape.image_size, shape.image_size)
    with FlopCounterMode(display=False) as counter:
        net(x)
    assert cost.forward_flops(8, 4, arch, shape.channels, shape.image_size, shape.classes, options) == \
        counter.get_total_flops()
    weights = sum(w.numel() for w in net.feedback_weights())
    assert ARCHS[arch].geometry(shape, 8, **options).weight_count() == weights


def test_resnet_depths_and_widths_give_he_et_als_sizes():
    """ResNet-20/32/44/56 at width 16: 0.27, 0.46, 0.66, 0.85 M weights (He et al., Table 6)."""
    shape = DataShape(0, 0, 0, 3, 32, 10, "cifar")
    sizes = {depth: ARCHS["resnet20"].geometry(shape, 16, depth=depth).weight_count() for depth in (20, 32, 44, 56)}
    assert [round(n / 1e6, 2) for n in sizes.values()] == [0.27, 0.46, 0.66, 0.85]
    # widening by k multiplies the conv weights by about k^2
    assert 3.9 < ARCHS["resnet20"].geometry(shape, 32).weight_count() / sizes[20] < 4.0


# ------------------------------------------------------------------ what a rule needs, refused in one line
def spec_of(**overrides):
    from walign.spec import RunSpec
    values = dict(dataset="embedded", rule="normal", width=8, lr=1.0, epochs=1, batch_size=None, seed=0)
    values.update(overrides)
    return RunSpec(**values)


@pytest.mark.parametrize("arch, rule, lacking", [("resnet20", "align_ada", "layers"), ("resnet20", "dfa", "layers"),
                                                 ("mlp", "gd_wstar", "scoring")])
def test_a_rule_the_network_cannot_serve_is_refused_naming_what_is_missing(arch, rule, lacking):
    with pytest.raises(ConfigError) as err:
        spec_of(arch=arch, rule=rule).validate()
    message = str(err.value)
    assert "\n" not in message and f"rule {rule} needs" in message and f"({lacking!r})" in message
    assert f"arch {arch} does not offer" in message and "rules it can train: " in message
    able = message.split("rules it can train: ")[1].split(", ")
    assert "normal" in able and rule not in able
    assert all(not set(RULES[r]["cnn"].needs) - ARCHS[arch].capabilities for r in able)


@pytest.mark.parametrize("overrides, expected", [
    (dict(arch="resnet20", arch_options={"depth": 21}), "arch.depth must be 6 n + 2"),
    (dict(arch="resnet20", arch_options={"depth": "deep"}), "arch.depth must be an integer, got 'deep'"),
    (dict(arch="resnet20", arch_options={"blocks": 3}), "arch resnet20 has no option 'blocks'; its options: depth"),
    (dict(arch="mlp", arch_options={"depth": 0}), "arch.depth must be 1..1000"),
    (dict(arch="lenet"), "arch must be auto or one of add_rnn, cifar"),
    (dict(arch="auto", arch_options={"depth": 3}), "arch auto (the data set's own network) takes no options"),
    (dict(arch="add_rnn"), "arch add_rnn is a rnn network; dataset embedded is learned by a cnn one"),
    (dict(dataset="add", arch="mlp", lr=0.001, batch_size=50), "arch mlp is a cnn network; dataset add"),
])
def test_wrong_architecture_values_are_one_line(overrides, expected):
    with pytest.raises(ConfigError, match=None) as err:
        spec_of(**overrides).validate()
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_every_builtin_rule_declares_only_known_capabilities():
    for name, families in RULES.items():
        for cls in families.values():
            assert set(cls.needs) <= set(CAPABILITIES), name


def test_arch_options_enter_the_run_identity_and_paper_runs_keep_their_names():
    paper = spec_of(rule="normal")
    assert "arch" not in paper.identity() and not any(k.startswith("arch_") for k in paper.identity())
    assert spec_of(arch="cifar").identity()["arch"] == "cifar" and "arch_depth" not in spec_of(arch="cifar").identity()
    r20, r56 = spec_of(arch="resnet20"), spec_of(arch="resnet20", arch_options={"depth": 56})
    assert r20.identity()["arch_depth"] == 20 and r56.identity()["arch_depth"] == 56
    assert r20.run_directory() != r56.run_directory()


def run_main(*args, cwd=REPO):
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_resnet_and_mlp_runs_complete_and_a_refusal_writes_nothing(tmp_path):
    """The issue's commands, shortened (a smoke-scale epoch on the embedded data)."""
    out = run_main("arch=resnet20", "rule=usf", "width=4", "epochs=1", "scale=smoke", "progress=none",
                   f"results_dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert "complete:" in out.stdout and "usf" in out.stdout
    out = run_main("arch=mlp", "rule=dfa", "arch.depth=2", "epochs=1", "scale=smoke", "progress=none",
                   f"results_dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    import json
    summaries = sorted(tmp_path.rglob("summary.json"))
    assert len(summaries) == 2
    values = [json.loads(p.read_text()) for p in summaries]
    assert {(v["rule"], v["arch"], v.get("arch_depth")) for v in values} == {("usf", "resnet20", 20), ("dfa", "mlp", 2)}
    refused = tmp_path / "refused"
    out = run_main("arch=resnet20", "rule=align_ada", f"results_dir={refused}")
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "'layers'" in out.stderr
    assert not refused.exists()
