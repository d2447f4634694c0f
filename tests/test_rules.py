"""Every CNN rule against a hand-built reference written from the autograd recipes of docs/method.md §5, and
the first principles: step-0 equality with backprop, and Align approaching backprop with width."""
import copy

import pytest
import torch
import torch.nn.functional as F

from walign.nets import ConvNet, NetSpec, batch_stat_norm
from walign.rules import RULES, build_rule, mse, output_error
from walign.rules.cnn import FeedbackAlignment

CNN_RULES = ["normal", "align_ada", "align_zero", "align_prop", "fa", "dfa", "last_layer", "sign_symmetry", "usf",
             "frsf", "brsf"]


pytestmark = pytest.mark.usefixtures("float64")


def tiny_net(width=6, arch="cifar", size=8, channels=3):
    return ConvNet(NetSpec(arch, width, in_channels=channels, image_size=size))


def batch(n=12, size=8, channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return x, F.one_hot(labels, 10).double() - 0.1


def grads_of(rule, x, y):
    return dict(zip(rule.params, rule.pseudo_gradients(x, y).grads, strict=True))


def move_away_from_init(rule, steps=3, lr=2.0):
    """A few SGD steps with the rule itself so current and initial weights differ."""
    for s in range(steps):
        x, y = batch(seed=100 + s)
        for p, g in zip(rule.params, rule.pseudo_gradients(x, y).grads, strict=True):
            if g is not None:
                p.data -= lr * g


# ------------------------------------------------------------------ references (docs/method.md §5)
def ref_normal(net, x, y):
    return dict(zip(net.parameters(), torch.autograd.grad(mse(net(x), y), list(net.parameters())), strict=True))


def ref_align_zero(net, frozen, x, y):
    """Surrogate whose value is the current loss but whose gradient flows through the frozen net."""
    params0 = [p.detach().clone().requires_grad_() for p in frozen.parameters()]
    f0 = copy.deepcopy(frozen)
    for p, q in zip(f0.parameters(), params0, strict=True):
        p.data = q.data
    f0.requires_grad_(True)
    with torch.no_grad():
        logits = net(x)
    logits0 = f0(x)
    surrogate = mse(logits + logits0 - logits0.detach(), y)
    return dict(zip(net.parameters(), torch.autograd.grad(surrogate, list(f0.parameters())), strict=True))


def ref_align_ada(net, frozen, x, y):
    """docs/method.md §5.3's joint unroll of the current and frozen networks."""
    h = h0 = x
    for l in range(net.depth):
        a = h if l == 0 else net.activation(h)
        a0 = x if l == 0 else frozen.activation(h0 + h - h.detach())
        h = net.layer(l, a.detach())
        h0 = frozen.layer(l, a0)
    p, p0 = net.pool(net.activation(h)), frozen.pool(frozen.activation(h0))
    logits = net.head(p.detach())
    logits0 = frozen.head(p0 + p - p.detach())
    loss = mse(logits + logits0 - logits0.detach(), y)
    return dict(zip(net.parameters(), torch.autograd.grad(loss, list(net.parameters())), strict=True))


def ref_feedback(net, feedback, x, y):
    """docs/method.md §5.5's per-layer trick: value from W, input gradient through the feedback kernel."""
    a = x
    for l in range(net.depth):
        xp = F.pad(a, net.pads[l])
        forward = F.conv2d(xp.detach(), net.weights[l], stride=net.strides[l]) * net.scales[l]
        back = F.conv2d(xp, feedback[l], stride=net.strides[l]) * net.scales[l]
        u = forward + net.biases[l].view(1, -1, 1, 1) + back - back.detach()
        a = net.activation(batch_stat_norm(u))
    p = net.pool(a)
    back = p @ feedback[-1].t() * net.fc_scale
    logits = p.detach() @ net.fc_weight.t() * net.fc_scale + net.fc_bias + back - back.detach()
    return dict(zip(net.parameters(), torch.autograd.grad(mse(logits, y), list(net.parameters())), strict=True))


def ref_dfa(net, projections, x, y):
    """docs/method.md §5.6: layers cut apart; each post-activation map projected to the logits by D_l."""
    a, extra = x, 0
    for l in range(net.depth):
        a = net.activation(net.layer(l, a.detach()))
        proj = a.permute(0, 2, 3, 1).reshape(len(x), -1) @ projections[l].t()  # (h, w, c) order
        extra = extra + proj - proj.detach()
    logits = net.head(net.pool(a).detach()) + extra
    return dict(zip(net.parameters(), torch.autograd.grad(mse(logits, y), list(net.parameters())), strict=True))


def ref_last_layer(net, x, y):
    head = [net.fc_weight, net.fc_bias]
    return dict(zip(head, torch.autograd.grad(mse(net(x), y), head), strict=True))


def sign_concordant(net, magnitudes):
    """Feedback |M| o sign(W) of the current weights (the sign-concordant rules, walign/rules/sign_concordant.py)."""
    return [m * torch.sign(w.detach()) for m, w in zip(magnitudes, [*net.weights, net.fc_weight], strict=True)]


def brsf_magnitudes(net, stream):
    """brSF's magnitudes for one step, from its random stream's state before the step: |N(0, 1)|
    per weight (NTK), drawn kernel by kernel, then the head."""
    generator = torch.Generator()
    generator.set_state(stream)
    return [torch.randn(w.shape, generator=generator, dtype=w.dtype).abs() for w in [*net.weights, net.fc_weight]]


def reference(rule, x, y, stream=None):
    net = rule.net
    if rule.name == "normal":
        return ref_normal(net, x, y)
    if rule.name == "align_zero":
        return ref_align_zero(net, rule.frozen, x, y)
    if rule.name == "align_ada":
        return ref_align_ada(net, rule.frozen, x, y)
    if rule.name in ("fa", "align_prop"):
        return ref_feedback(net, rule.feedback, x, y)
    if rule.name == "dfa":
        return ref_dfa(net, rule.projections, x, y)
    if rule.name == "last_layer":
        return ref_last_layer(net, x, y)
    if rule.name in ("sign_symmetry", "usf"):
        return ref_feedback(net, [torch.sign(w.detach()) for w in [*net.weights, net.fc_weight]], x, y)
    if rule.name == "frsf":
        return ref_feedback(net, sign_concordant(net, rule.fixed), x, y)
    if rule.name == "brsf":
        return ref_feedback(net, sign_concordant(net, brsf_magnitudes(net, stream)), x, y)
    raise AssertionError(rule.name)


def assert_same(got: dict, want: dict, params, atol=1e-10):
    for p in params:
        g, w = got.get(p), want.get(p)
        if w is None:
            assert g is None or g.abs().max() < atol
            continue
        assert g is not None and torch.allclose(g, w, atol=atol, rtol=1e-8), (g - w).abs().max()


# ------------------------------------------------------------------ tests
def test_registry_holds_the_seven_cnn_rules_and_the_alignment_pair():
    """walign's own CNN rules (a plugin package installed beside it may add more: only walign's
    modules are counted)."""
    own = sorted(n for n, families in RULES.items()
                 if "cnn" in families and families["cnn"].__module__.startswith("walign."))
    assert sorted(CNN_RULES + ["gd_wstar"]) == own
    with pytest.raises(KeyError, match="valid rules: align_ada"):
        build_rule("nope", tiny_net(), 0)


@pytest.mark.parametrize("name", CNN_RULES)
def test_rule_equals_its_reference_away_from_initialisation(name):
    rule = build_rule(name, tiny_net(), 7)
    move_away_from_init(rule)
    if hasattr(rule, "frozen"):
        assert not torch.equal(rule.net.weights[2], rule.frozen.weights[2])
    x, y = batch(seed=1)
    stream = rule.generator.get_state() if name == "brsf" else None  # what its next draw starts from
    got = grads_of(rule, x, y)
    assert_same(got, reference(rule, x, y, stream), rule.params)


@pytest.mark.parametrize("name", ["align_ada", "align_zero", "align_prop"])
def test_first_update_of_every_align_rule_equals_backprop(name):
    """docs/method.md §5.8: at the initial weights the frozen network is the current one."""
    x, y = batch(seed=2)
    normal, rule = build_rule("normal", tiny_net(), 11), build_rule(name, tiny_net(), 11)
    got, want = rule.pseudo_gradients(x, y).grads, normal.pseudo_gradients(x, y).grads
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-12)


def test_last_layer_updates_the_head_as_backprop_does_and_no_conv_layer():
    """At the initial weights, last_layer's head gradients are backprop's own; its conv layers get none,
    where backprop's are not zero."""
    x, y = batch(seed=2)
    normal, rule = build_rule("normal", tiny_net(), 11), build_rule("last_layer", tiny_net(), 11)
    got = dict(zip(rule.params, rule.pseudo_gradients(x, y).grads, strict=True))
    want = dict(zip(normal.params, normal.pseudo_gradients(x, y).grads, strict=True))
    head = {id(rule.net.fc_weight): id(normal.net.fc_weight), id(rule.net.fc_bias): id(normal.net.fc_bias)}
    by_id = {id(p): g for p, g in want.items()}
    compared = 0
    for p, g in got.items():
        if id(p) in head:
            assert g is not None and torch.allclose(g, by_id[head[id(p)]], atol=1e-12)
            compared += 1
    assert compared == 2
    for w_rule, w_normal in zip(rule.net.weights, normal.net.weights, strict=True):
        assert got.get(w_rule) is None or not got[w_rule].any()
        assert want[w_normal].abs().max() > 1e-8


@pytest.mark.parametrize("name", ["fa", "dfa", "sign_symmetry"])
def test_first_update_of_the_baselines_differs_from_backprop(name):
    x, y = batch(seed=2)
    normal, rule = build_rule("normal", tiny_net(), 11), build_rule(name, tiny_net(), 11)
    got = dict(zip(rule.net.weights, [g for g, p in zip(rule.pseudo_gradients(x, y).grads, rule.params, strict=True)
                                      if p.dim() == 4]))
    want = normal.pseudo_gradients(x, y).grads
    w0 = next(g for g, p in zip(want, normal.params, strict=True) if p is normal.net.weights[0])
    g0 = got[rule.net.weights[0]]
    assert g0 is not None and not torch.allclose(g0, w0, atol=1e-6)


def test_align_zero_is_the_frozen_networks_gradient_with_the_current_error():
    """docs/method.md §5.2: J_{theta0}(x)^T e with e from the current network."""
    rule = build_rule("align_zero", tiny_net(), 3)
    move_away_from_init(rule)
    x, y = batch(seed=4)
    frozen = copy.deepcopy(rule.frozen)
    e = output_error(rule.net(x).detach(), y)
    want = torch.autograd.grad(frozen(x), list(frozen.parameters()), grad_outputs=e)
    for g, w in zip(rule.pseudo_gradients(x, y).grads, want, strict=True):
        assert torch.allclose(g, w, atol=1e-12)


def test_align_ada_last_conv_layer_uses_the_current_activation_mask():
    """docs/method.md §5.3: perturb the current last conv layer so its ReLU pattern moves; the
    rule's update of that layer must follow the current mask, not the frozen one."""
    rule = build_rule("align_ada", tiny_net(), 5)
    net, frozen, last = rule.net, rule.frozen, rule.net.depth - 1
    with torch.no_grad():
        net.weights[last].add_(torch.randn_like(net.weights[last]) * 0.7)
    x, y = batch(seed=6)
    got = grads_of(rule, x, y)[net.weights[last]]
    # hand-built: signal e W_fc(0)/sqrt(C) spread over positions, masked, then the layer's own BN
    a = x
    for l in range(last):
        a = net.activation(net.layer(l, a))
    h = net.layer(last, a.detach())
    with torch.no_grad():
        e = output_error(net(x), y)
        h0 = frozen.activation(frozen.layer(0, x))
        for l in range(1, last + 1):
            h0 = frozen.layer(l, h0 if l == last else h0)
            h0 = h0 if l == last else frozen.activation(h0)
    spread = ((e @ frozen.fc_weight) * frozen.fc_scale)[:, :, None, None] / (h.shape[2] * h.shape[3])
    current = torch.autograd.grad(h, net.weights[last], (h > 0).double() * spread, retain_graph=True)[0]
    frozen_mask = torch.autograd.grad(h, net.weights[last], (h0 > 0).double() * spread)[0]
    assert torch.allclose(got, current, atol=1e-12)
    assert not torch.allclose(got, frozen_mask, atol=1e-6)


def test_fa_with_the_initial_weights_as_feedback_is_align_prop():
    """docs/method.md §5.4 and §5.5."""
    prop = build_rule("align_prop", tiny_net(), 9)
    move_away_from_init(prop)
    twin_net = copy.deepcopy(prop.net)
    fa = FeedbackAlignment(twin_net, [f.clone() for f in prop.feedback])
    x, y = batch(seed=3)
    for g, w in zip(fa.pseudo_gradients(x, y).grads, prop.pseudo_gradients(x, y).grads, strict=True):
        assert torch.allclose(g, w, atol=1e-12)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_sign_symmetry_of_the_initial_weights_keeps_the_initial_signs(parameterization):
    """initial=True: the feedback is sign(W(0)) (scaled like the draws), fixed while W moves."""
    spec = NetSpec("cifar", 6, image_size=8, parameterization=parameterization)
    rule = build_rule("sign_symmetry", ConvNet(spec), 7, initial=True)
    w0 = [w.detach().clone() for w in [*rule.net.weights, rule.net.fc_weight]]
    move_away_from_init(rule)
    current = [*rule.net.weights, rule.net.fc_weight]
    assert not all(torch.equal(torch.sign(w), torch.sign(v)) for w, v in zip(w0, current, strict=True))
    scale = [1 / w[0].numel() ** 0.5 if parameterization == "standard" else 1.0 for w in w0]
    x, y = batch(seed=1)
    feedback = [torch.sign(w) * s for w, s in zip(w0, scale, strict=True)]
    assert_same(grads_of(rule, x, y), ref_feedback(rule.net, feedback, x, y), rule.params)


def test_dfa_signal_is_the_projected_error_in_hwc_order():
    """docs/method.md §5.6: column (h*W + w)*C + c of D_l feeds element (c, h, w)."""
    rule = build_rule("dfa", tiny_net(width=3), 1)
    c, hgt, wid = rule.net.feature_shapes[4]
    rule.projections[4].zero_()
    rule.projections[4][2, (1 * wid + 2) * c + 1] = 1.0
    e = torch.zeros(5, 10)
    e[:, 2] = 3.0
    signal = rule.signal(4, e)
    assert signal.shape == (5, c, hgt, wid)
    assert torch.all(signal[:, 1, 1, 2] == 3.0) and signal.abs().sum() == 15.0


def test_dfa_shared_projection_spreads_one_matrix_over_positions():
    rule = build_rule("dfa", tiny_net(width=3), 1, projection="shared", projection_std=0.5)
    assert rule.projections[0].shape == (10, 3)
    e = torch.randn(4, 10)
    s = rule.signal(0, e)
    assert torch.allclose(s[:, :, 0, 0], s[:, :, 5, 7])
    assert torch.allclose(s[:, :, 0, 0] * 64, e @ rule.projections[0])


@pytest.mark.parametrize("name", CNN_RULES)
def test_every_rule_lowers_the_training_loss(name):
    torch.manual_seed(0)
    means = torch.rand(10, 3, 8, 8)
    labels = torch.arange(40) % 10
    x = (means[labels] + 0.3 * torch.rand(40, 3, 8, 8)).clamp(0, 1)
    y = F.one_hot(labels, 10).double() - 0.1
    rule = build_rule(name, tiny_net(width=16), 0)
    optimizer = torch.optim.SGD(rule.params, lr=0.5)
    first = rule.pseudo_gradients(x, y).loss
    for _ in range(30):
        for p, g in zip(rule.params, rule.pseudo_gradients(x, y).grads, strict=True):
            p.grad = g
        optimizer.step()
    assert rule.pseudo_gradients(x, y).loss < 0.7 * first


def gap_to_backprop(name: str, width: int, steps: int = 8, lr: float = 1.0) -> float:
    """Relative output gap between rule ``name`` and backprop after ``steps`` identical SGD steps."""
    rules = {n: build_rule(n, tiny_net(width, "kmnist", 12, 1), 0) for n in ("normal", name)}
    x_eval, _ = batch(32, 12, 1, seed=50)
    with torch.no_grad():
        start = rules["normal"].net(x_eval)
    for s in range(steps):
        x, y = batch(32, 12, 1, seed=s)
        for rule in rules.values():
            for p, g in zip(rule.params, rule.pseudo_gradients(x, y).grads, strict=True):
                p.data -= lr * g
    with torch.no_grad():
        normal, other = rules["normal"].net(x_eval), rules[name].net(x_eval)
    return float((other - normal).norm() / (normal - start).norm())


@pytest.mark.parametrize("name", ["align_ada", "align_zero"])
def test_align_trajectories_approach_backprop_as_width_grows(name):
    """Proposition 2 in miniature: after the same k steps from the same init, the output gap to
    backprop is clearly smaller in a wide network than in a narrow one."""
    narrow, wide = gap_to_backprop(name, 8), gap_to_backprop(name, 128)
    assert wide < 0.25 * narrow, (narrow, wide)


# ------------------------------------------------------------------ the sign-concordant rules
def test_usf_is_sign_symmetry_and_frsf_draws_fas_feedback_magnitudes_once():
    """uSF is sign_symmetry under biotorch's name; frSF's |M| are the absolute values of the
    feedback weights FA draws from the same seed, and stay fixed while the rule trains."""
    x, y = batch(seed=2)
    usf, sign = build_rule("usf", tiny_net(), 5), build_rule("sign_symmetry", tiny_net(), 5)
    for g, w in zip(usf.pseudo_gradients(x, y).grads, sign.pseudo_gradients(x, y).grads, strict=True):
        assert torch.equal(g, w)
    frsf, fa = build_rule("frsf", tiny_net(), 5), build_rule("fa", tiny_net(), 5)
    drawn = [m.clone() for m in frsf.fixed]
    assert all(torch.equal(m, f.abs()) for m, f in zip(drawn, fa.feedback, strict=True))
    move_away_from_init(frsf)
    assert all(torch.equal(m, k) for m, k in zip(drawn, frsf.fixed, strict=True))


def test_brsf_draws_new_magnitudes_every_step_and_a_restored_state_draws_on_where_it_was():
    rule = build_rule("brsf", tiny_net(), 5)
    first, second = rule.magnitudes(), rule.magnitudes()
    assert not torch.equal(first[0], second[0]) and all(m.min() >= 0 for m in first)
    saved = rule.state_dict()
    expected = rule.magnitudes()
    twin = build_rule("brsf", tiny_net(), 5)
    twin.load_state_dict(saved)
    assert all(torch.equal(a, b) for a, b in zip(twin.magnitudes(), expected, strict=True))
    with pytest.raises(ValueError, match="no brsf random stream"):
        twin.load_state_dict({"params": saved["params"]})
