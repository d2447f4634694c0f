"""The standard training recipe beside the paper's (issue 39 item 6): cross-entropy, SGD momentum and
weight decay, a multistep lr schedule and on-device crop-and-flip, each off by default; every
part checked against a hand-built reference, and a run using all of them resumes bit for bit."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from test_rules import batch, tiny_net
from walign import checkpoint
from walign.augment import Augment
from walign.datasets.embedded import load_embedded
from walign.errors import ConfigError
from walign.nets import ConvNet, NetSpec
from walign.rules import build_rule
from walign.rules.base import cross_entropy_error
from walign.train import TrainConfig, TrainState, train


def spec_of(**overrides):
    from walign.spec import RunSpec
    values = dict(dataset="embedded", rule="normal", width=8, lr=1.0, epochs=20, batch_size=None, seed=0)
    values.update(overrides)
    return RunSpec(**values)


def test_the_paper_recipe_is_the_default_and_stays_out_of_run_names():
    paper = spec_of()
    assert (paper.loss, paper.momentum, paper.weight_decay, paper.lr_milestones, paper.augment) == \
        ("mse", 0.0, 0.0, (), False)
    assert not {"loss", "momentum", "weight_decay", "lr_milestones", "lr_gamma", "augment"} & set(paper.identity())
    recipe = spec_of(loss="cross_entropy", momentum=0.9, weight_decay=1e-4, lr_milestones=(5, 10), augment=True)
    assert recipe.identity()["lr_milestones"] == [5, 10] and recipe.identity()["momentum"] == 0.9
    assert recipe.run_directory() != paper.run_directory()
    assert spec_of(lr_gamma=0.5).identity() == paper.identity()  # gamma without milestones changes nothing


@pytest.mark.parametrize("overrides, expected", [
    (dict(loss="hinge"), "loss must be one of mse, cross_entropy, got 'hinge'"),
    (dict(rule="gd_wstar", loss="cross_entropy"), "rule gd_wstar (cnn) is written for the loss mse only"),
    (dict(momentum=1.0), "momentum must be a number in [0, 1), got 1.0"),
    (dict(weight_decay=-1e-4), "weight_decay must be a number in [0, 1)"),
    (dict(momentum=0.9, optimizer="adam"), "momentum is SGD's; optimizer adam"),
    (dict(lr_milestones=(10, 5)), "lr_milestones must be increasing epochs in 1..19"),
    (dict(lr_milestones=(20,)), "lr_milestones must be increasing epochs in 1..19"),
    (dict(lr_milestones=(5,), lr_gamma=0.0), "lr_gamma must be a number in (0, 1]"),
    (dict(augment="yes"), "augment must be true or false"),
    (dict(dataset="add", lr=0.001, batch_size=50, augment=True), "augment crops and flips images"),
])
def test_wrong_recipe_values_are_one_line(overrides, expected):
    with pytest.raises(ConfigError) as err:
        spec_of(**overrides).validate()
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.usefixtures("float64")
def test_cross_entropy_error_is_the_gradient_of_the_loss_and_backprop_uses_it():
    x, y = batch(seed=4)
    logits = torch.randn(len(x), 10, requires_grad=True)
    (want,) = torch.autograd.grad(F.cross_entropy(logits, y.argmax(1)), logits)
    assert torch.allclose(cross_entropy_error(logits.detach(), y), want, atol=1e-14)
    net = tiny_net()
    rule = build_rule("normal", net, 3, loss="cross_entropy")
    params = list(net.parameters())
    expected = torch.autograd.grad(F.cross_entropy(net(x), y.argmax(1)), params)
    got = rule.pseudo_gradients(x, y).grads
    assert len(got) == len(expected) == len(params)
    for g, w in zip(got, expected, strict=True):
        assert torch.allclose(g, w, atol=1e-12)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("name", ["align_ada", "align_zero", "align_prop"])
def test_first_update_of_every_align_rule_equals_backprop_under_cross_entropy(name):
    x, y = batch(seed=2)
    normal = build_rule("normal", tiny_net(), 11, loss="cross_entropy")
    rule = build_rule(name, tiny_net(), 11, loss="cross_entropy")
    mse = build_rule("normal", tiny_net(), 11)
    got, want = rule.pseudo_gradients(x, y).grads, normal.pseudo_gradients(x, y).grads
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-12)
    assert not torch.allclose(want[0], mse.pseudo_gradients(x, y).grads[0])  # the loss did change


@pytest.mark.usefixtures("float64")
def test_momentum_and_weight_decay_step_as_written_out():
    """v <- mu v + (g + wd p); p <- p - lr v, twice, against the optimizer walign builds."""
    lr, mu, wd = 0.5, 0.9, 1e-2
    rule = build_rule("fa", tiny_net(), 5)
    state = TrainState(rule, TrainConfig(epochs=1, lr=lr, batch_size=12, momentum=mu, weight_decay=wd))
    params = [p.detach().clone() for p in rule.params]
    velocity = [torch.zeros_like(p) for p in params]
    for s in range(2):
        x, y = batch(seed=10 + s)
        grads = rule.pseudo_gradients(x, y).grads
        for i, g in enumerate(grads):
            velocity[i] = mu * velocity[i] + g + wd * params[i] if s else g + wd * params[i]
            params[i] = params[i] - lr * velocity[i]
        for p, g in zip(rule.params, grads, strict=True):
            p.grad = g
        state.optimizer.step()
    for p, want in zip(rule.params, params, strict=True):
        assert torch.allclose(p, want, atol=1e-12)


def test_the_schedule_multiplies_the_lr_after_each_milestone_in_the_training_loop():
    cfg = TrainConfig(epochs=5, lr=2.0, batch_size=100, lr_milestones=(2, 4), lr_gamma=0.1, eval_test=False)
    assert [cfg.lr_at(e) for e in range(1, 6)] == pytest.approx([2.0, 2.0, 0.2, 0.2, 0.02])
    data = load_embedded(torch.device("cpu"))
    state = TrainState(build_rule("normal", ConvNet(NetSpec("kmnist", 2, 3, 32, 10)), 1), cfg)
    seen = []
    train(state, data, lambda record: seen.append(state.optimizer.param_groups[0]["lr"]))
    assert seen == pytest.approx([2.0, 2.0, 0.2, 0.2, 0.02])


def test_augmentation_crops_the_padded_image_and_flips_on_the_batchs_device():
    x = torch.arange(2 * 3 * 6 * 5, dtype=torch.float32).view(2, 3, 6, 5) + 1
    augment = Augment(seed=0, device=torch.device("cpu"))
    twin = Augment(seed=0, device=torch.device("cpu"))
    for _ in range(5):
        state = augment.state()
        out = augment(x)
        assert out.shape == x.shape and out.device == x.device
        # the draws, replayed: offsets (2, B) in 0..8, then a flip per image
        g = torch.Generator().manual_seed(0)
        g.set_state(state)
        offsets = torch.randint(0, 9, (2, 2), generator=g)
        flips = torch.rand(2, generator=g) < 0.5
        padded = F.pad(x, (4, 4, 4, 4))
        for b in range(2):
            oy, ox = int(offsets[0, b]), int(offsets[1, b])
            want = padded[b, :, oy:oy + 6, ox:ox + 5]
            assert torch.equal(out[b], want.flip(2) if flips[b] else want)
        assert torch.equal(out, twin(x))  # the same stream from the same seed
    assert not torch.equal(Augment(seed=1, device=torch.device("cpu"))(x), Augment(seed=0, device=torch.device("cpu"))(x))


def test_a_run_with_the_whole_recipe_resumes_bit_for_bit(tmp_path):
    """Momentum buffers, the schedule and the augmentation stream all come back from the checkpoint."""
    data = load_embedded(torch.device("cpu"))
    cfg = TrainConfig(epochs=3, lr=0.5, batch_size=100, seed=5, eval_test=False, momentum=0.9, weight_decay=1e-4,
                      lr_milestones=(1, 2), lr_gamma=0.5, augment=True)

    def fresh():
        return build_rule("usf", ConvNet(NetSpec("kmnist", 4, 3, 32, 10)), 3, loss="cross_entropy")

    whole, running = [], TrainState(fresh(), cfg)

    def keep(record):
        whole.append(record)
        if record["epoch"] == 1:
            checkpoint.save(tmp_path / "after1.pt", checkpoint.Checkpoint({"run": 1}, list(whole), running.snapshot()))

    train(running, data, keep)
    resumed, records = TrainState(fresh(), cfg), []
    resumed.restore(checkpoint.load(tmp_path / "after1.pt", {"run": 1}).training)
    train(resumed, data, records.append)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in whole[1:]]
    for a, b in zip(running.rule.params, resumed.rule.params, strict=True):
        assert torch.equal(a, b)
    plain = TrainState(fresh(), TrainConfig(epochs=3, lr=0.5, batch_size=100, seed=5, eval_test=False, momentum=0.9,
                                            weight_decay=1e-4, lr_milestones=(1, 2), lr_gamma=0.5))
    train(plain, data, lambda record: None)
    assert not torch.equal(plain.rule.params[0], running.rule.params[0])  # augmentation changed the run


@pytest.mark.parametrize("arch", ["cifar", "resnet20", "mlp"])
def test_xavier_rescales_each_weight_to_its_variance_and_fa_feedback_with_it(arch):
    from walign.archs import ARCHS
    from walign.datasets import DataShape
    from walign.nets import xavier_factor
    shape = DataShape(0, 0, 0, 3, 16, 10, "cifar")
    plain = ARCHS[arch].create(shape, 8, 10, "relu", "standard", {})
    xavier = ARCHS[arch].create(shape, 8, 10, "relu", "standard", {})
    xavier.initialization = "xavier"
    build_rule("normal", plain, 3)
    fa = build_rule("fa", xavier, 3)
    fa_plain = build_rule("fa", ARCHS[arch].create(shape, 8, 10, "relu", "standard", {}), 3)
    for w, x in zip(plain.feedback_weights()[:1], xavier.feedback_weights()[:1], strict=True):
        assert torch.allclose(x, w * xavier_factor(w))  # the same draw, rescaled (first weight: before FA's draws)
    for w, b, b_plain in zip(xavier.feedback_weights(), fa.feedback, fa_plain.feedback, strict=True):
        fan_in = w[0].numel()
        fan_out = w.shape[0] * (w[0, 0].numel() if w.dim() > 2 else 1)
        assert torch.allclose(b, b_plain * (2 * fan_in / (fan_in + fan_out)) ** 0.5)
    big = ConvNet(NetSpec("kmnist", 64, 3, 8, 10, parameterization="standard"))
    big.initialization = "xavier"
    build_rule("normal", big, 0)
    w = big.weights[1]
    assert abs(w.var().item() / (2 / (9 * 64 + 9 * 64)) - 1) < 0.05


def test_xavier_is_for_the_standard_parameterisation():
    with pytest.raises(ConfigError, match="under ntk the weights are N.0, 1. by definition"):
        spec_of(init="xavier").validate()
    spec_of(init="xavier", parameterization="standard", optimizer="sgd").validate()
    assert spec_of(init="xavier", parameterization="standard").identity()["init"] == "xavier"
