"""Alignment scores (docs/method.md §7): the estimator against exact values, and the paired run."""
import math

import pytest
import torch
import torch.nn.functional as F

from walign.alignment import kernel_score, operator_score, permuted
from walign.nets import ConvNet, NetSpec, same_padding
from walign.rules import build_rule


pytestmark = pytest.mark.usefixtures("float64")


def pads(size, stride):
    p = same_padding(size, stride)
    return (p[0], p[1], p[0], p[1])


def operator_matrix(kernel, shape, stride):
    """The convolution (SAME padding, stride) as an explicit (outputs x inputs) matrix."""
    f = lambda z: F.conv2d(F.pad(z.view(1, *shape), pads(shape[1], stride)), kernel, stride=stride).flatten()  # noqa: E731
    return torch.autograd.functional.jacobian(f, torch.zeros(math.prod(shape)))


def exact_operator_score(d, d_star, shape, stride):
    a, b = operator_matrix(d, shape, stride), operator_matrix(d_star, shape, stride)
    delta, sigma = a.T @ a, b.T @ b
    return float(torch.trace(delta @ sigma) / torch.sqrt(torch.trace(delta @ delta) * torch.trace(sigma @ sigma)))


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("stride", [1, 2])
def test_proportional_changes_score_one(stride):
    d = torch.randn(4, 3, 3, 3, generator=generator())
    shape = (3, 8, 8)
    assert operator_score(d, 2.5 * d, shape, stride, pads(8, stride), 5, 20, generator()) == pytest.approx(1, abs=1e-9)
    assert kernel_score(d, 2.5 * d) == pytest.approx(1, abs=1e-12)


def test_independent_random_changes_score_low():
    g = generator(1)
    d, d_star = torch.randn(4, 8, 3, 3, generator=g), torch.randn(4, 8, 3, 3, generator=g)
    assert kernel_score(d, d_star) < 0.25
    assert operator_score(d, d_star, (8, 8, 8), 1, pads(8, 1), 20, 50, g) < 0.35


@pytest.mark.parametrize("stride", [1, 2])
def test_stochastic_estimator_agrees_with_the_explicit_operator_gram_matrices(stride):
    g = generator(2)
    d = torch.randn(3, 2, 3, 3, generator=g)
    d_star = d + 0.8 * torch.randn(3, 2, 3, 3, generator=g)  # partly aligned: a score well inside (0, 1)
    shape = (2, 6, 6)
    exact = exact_operator_score(d, d_star, shape, stride)
    estimate = operator_score(d, d_star, shape, stride, pads(6, stride), 100, 100, g)
    assert 0.2 < exact < 0.95
    assert estimate == pytest.approx(exact, abs=0.02)


def test_kernel_score_is_the_cosine_of_the_reshaped_gram_matrices():
    g = generator(3)
    d, d_star = torch.randn(5, 2, 3, 3, generator=g), torch.randn(5, 2, 3, 3, generator=g)
    m, n = d.flatten(1), d_star.flatten(1)
    delta, sigma = m.T @ m, n.T @ n
    want = torch.trace(delta @ sigma) / torch.sqrt(torch.trace(delta @ delta) * torch.trace(sigma @ sigma))
    assert kernel_score(d, d_star) == pytest.approx(float(want), abs=1e-12)


def test_permutation_shuffles_each_kernel_reproducibly():
    ws = [torch.arange(12.0).view(1, 1, 3, 4), torch.arange(8.0).view(2, 1, 2, 2)]
    first, again = permuted(ws), permuted(ws)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(sorted(p.flatten().tolist()) == sorted(w.flatten().tolist()) for p, w in zip(first, ws, strict=True))
    assert not torch.equal(first[0], ws[0])


def toy_data(n=60, size=8, seed=0):
    g = generator(seed)
    means = torch.rand(10, 3, size, size, generator=g)
    labels = torch.arange(n) % 10
    x = (means[labels] + 0.3 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)
    return x, F.one_hot(labels, 10).double() - 0.1


def train_pair(width, steps=15, lr=2.0, **options):
    net = ConvNet(NetSpec("cifar", width, image_size=8))
    rule = build_rule("gd_wstar", net, 0, iterations=10, probes=20, **options)
    x, y = toy_data()
    optimizer = torch.optim.SGD(rule.params, lr=lr)
    for s in range(steps):
        idx = torch.randperm(60, generator=generator(s))[:20]
        for p, g in zip(rule.params, rule.pseudo_gradients(x[idx], y[idx]).grads, strict=True):
            p.grad = g
        optimizer.step()
    return rule


def test_w_star_accumulates_the_frozen_networks_kernel_gradients_with_the_gd_error():
    rule = train_pair(6, steps=2)
    x, y = toy_data(seed=9)
    frozen = ConvNet(NetSpec("cifar", 6, image_size=8))
    frozen.load_state_dict(rule.frozen.state_dict())
    e = 2 * (rule.net(x).detach() - y) / y.numel()
    want = torch.autograd.grad(frozen(x), list(frozen.weights), grad_outputs=e)
    got = rule.pseudo_gradients(x, y).grads[-len(rule.star):]
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(got, want, strict=True))


def test_first_step_of_gd_and_w_star_is_identical():
    rule = train_pair(6, steps=1)
    for w, w0, s in zip(rule.net.weights, rule.frozen.weights, rule.star, strict=True):
        assert torch.allclose(w, s, atol=1e-12) and not torch.allclose(w, w0)


def test_permuted_baseline_is_far_below_the_real_score_after_training():
    scores = train_pair(16, permuted=True).scores()
    real, base = scores["kernel"], scores["permuted_kernel"]
    assert min(real) > 0.5 and all(r > b for r, b in zip(real, base, strict=True))
    assert sum(base) < 0.5 * sum(real)
    assert sum(scores["operator"]) / 7 > 2 * sum(scores["permuted_operator"]) / 7


def test_scores_are_reported_only_after_the_configured_epochs():
    rule = train_pair(4, steps=1, score_epochs=[2])
    assert rule.epoch_metrics(1) == {}
    metrics = rule.epoch_metrics(2)["alignment"]
    assert len(metrics["operator"]) == 7 and metrics["seconds"] > 0
    every = train_pair(4, steps=1, score_epochs="all")
    assert all("alignment" in every.epoch_metrics(epoch) for epoch in (1, 2, 7))


def test_released_kmnist_variant_scores_three_layers_with_kmnist_strides():
    net = ConvNet(NetSpec("cifar", 4, in_channels=1, image_size=28))
    rule = build_rule("gd_wstar", net, 0, score_layers=3, score_strides=[1, 2, 2], iterations=2, probes=4)
    assert rule.input_shapes == [(1, 28, 28), (4, 28, 28), (4, 14, 14)]
    with pytest.raises(ValueError, match="one stride per scored layer"):
        build_rule("gd_wstar", ConvNet(NetSpec("cifar", 4)), 0, score_layers=3, score_strides=[1, 2])


def test_wider_networks_align_better_after_the_same_short_training_on_the_embedded_data():
    """Figure 1's trend in miniature: a 3-conv net (strides 1, 2, 2) on the embedded CIFAR-10
    sample, 3 epochs at lr 5; the mean score over layers is clearly higher at width 32 than at 8."""
    from walign.datasets.embedded import load_embedded
    from walign.train import TrainConfig, TrainState, train

    torch.set_default_dtype(torch.float32)
    data = load_embedded("cpu")

    def mean_scores(width):
        net = ConvNet(NetSpec("kmnist", width, in_channels=3, image_size=32))
        rule = build_rule("gd_wstar", net, 99, score_epochs=[3], iterations=5, probes=10)
        records = []
        train(TrainState(rule, TrainConfig(3, 5.0, 50, seed=99, eval_test=False)), data, records.append)
        scores = records[-1]["alignment"]
        return sum(scores["kernel"]) / 3, sum(scores["operator"]) / 3

    narrow, wide = mean_scores(8), mean_scores(32)
    assert wide[0] > narrow[0] + 0.05, (narrow, wide)
    assert wide[1] > narrow[1], (narrow, wide)


def frozen_third_layer(nan_skip):
    """A trained pair whose third conv layer never changed (GD and W* kernels reset to W(0))."""
    rule = train_pair(6, steps=3, nan_skip=nan_skip)
    with torch.no_grad():
        rule.net.weights[2].copy_(rule.frozen.weights[2])
        rule.star[2].copy_(rule.frozen.weights[2])
    return rule


def test_a_layer_that_never_changed_blanks_every_layer_as_the_released_code_does():
    # its D = 0 makes every probe iteration NaN there; the released estimator then drops each
    # iteration for all layers, so no layer has a score left (docs/method.md §7.3), and that is the default
    scores = frozen_third_layer("all_layers").scores()
    assert all(math.isnan(s) for s in scores["operator"])
    default = build_rule("gd_wstar", ConvNet(NetSpec("cifar", 4, image_size=8)), 0)
    assert default.nan_skip == "all_layers"


def test_per_layer_skipping_keeps_the_other_layers_scores():
    per_layer = frozen_third_layer("per_layer").scores()["operator"]
    assert math.isnan(per_layer[2])
    others = per_layer[:2] + per_layer[3:]
    assert all(0 < s <= 1 for s in others)
    # and the other layers' scores are those each layer gets alone (the same probes, in order)
    rule = frozen_third_layer("per_layer")
    initial, current = rule.frozen.weights, rule.net.weights
    alone = []
    for l in range(7):
        d, d_star = current[l].detach() - initial[l], rule.star[l].detach() - initial[l]
        alone.append(operator_score(d, d_star, rule.input_shapes[l], rule.strides[l], rule.pads[l], 10, 20,
                                    rule.generator))
    assert alone[:2] + alone[3:] == others


def test_nan_skip_per_layer_keeps_the_run_directory_of_runs_made_before_the_option():
    from walign.spec import RunSpec
    spec = RunSpec(dataset="embedded", rule="gd_wstar", width=8, lr=1.0, epochs=2, seed=0,
                   batch_size=10, rule_options={"nan_skip": "per_layer", "iterations": 10})
    assert "nan_skip" not in spec.identity()
    coded = RunSpec(dataset="embedded", rule="gd_wstar", width=8, lr=1.0, epochs=2, seed=0,
                    batch_size=10, rule_options={"nan_skip": "all_layers", "iterations": 10})
    assert coded.identity()["nan_skip"] == "all_layers"
    assert coded.run_directory() != spec.run_directory()
