"""A peer check against biotorch, the field's library for feedback-alignment rules (issue 39):
the same small network (two convolutions and a linear head) built from biotorch's FA, uSF and frSF
layers and from walign's feedback primitives (walign/feedback.py, what every walign feedback rule
runs), with the same weights and the same feedback matrices, gives the same weight gradients to
float64 tolerance, before and after a few SGD steps (uSF's and frSF's feedback follows the signs of
the moving weights).

biotorch 0.0.16 declares jupyter among its requirements while its layers need only torch, so .ci/run
installs it with --no-deps; where it is not installed the test is skipped with one line.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from walign.feedback import FeedbackConv2d, FeedbackLinear

biotorch = pytest.importorskip("biotorch", reason="biotorch is not installed (.ci/run: pip install --no-deps "
                               "biotorch==0.0.16)")


def biotorch_net(kind: str):
    from biotorch.layers import fa, frsf, usf
    layers = {"fa": fa, "usf": usf, "frsf": frsf}[kind]
    torch.manual_seed(3)
    return torch.nn.ModuleList([layers.Conv2d(3, 4, 3, stride=1, padding=1),
                                layers.Conv2d(4, 5, 3, stride=2, padding=1),
                                layers.Linear(5 * 4 * 4, 10)]).double()


def biotorch_forward(net, x):
    h = F.relu(net[0](x))
    h = F.relu(net[1](h))
    return net[2](h.flatten(1))


def feedback_of(layer, kind: str) -> torch.Tensor:
    """The matrix biotorch's layer sends the error through, written out from its definition."""
    if kind == "usf":
        return layer.scaling_factor * torch.sign(layer.weight.detach())
    if kind == "frsf":
        return layer.weight_backward.detach().abs() * torch.sign(layer.weight.detach())
    return layer.weight_backward.detach()


def walign_forward(weights, biases, feedback, x):
    """The same network from walign's feedback primitives (padding applied outside, as walign does)."""
    h = FeedbackConv2d.apply(F.pad(x, (1, 1, 1, 1)), weights[0], feedback[0], 1) + biases[0][:, None, None]
    h = F.relu(h)
    h = FeedbackConv2d.apply(F.pad(h, (1, 1, 1, 1)), weights[1], feedback[1], 2) + biases[1][:, None, None]
    h = F.relu(h)
    return FeedbackLinear.apply(h.flatten(1), weights[2], feedback[2]) + biases[2]


@pytest.mark.parametrize("kind", ["fa", "usf", "frsf"])
def test_walign_feedback_gradients_equal_biotorchs(kind):
    net = biotorch_net(kind)
    g = torch.Generator().manual_seed(0)
    for step in range(4):
        x = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
        y = torch.randn(6, 10, generator=g, dtype=torch.float64)
        feedback = [feedback_of(layer, kind) for layer in net]
        net.zero_grad()
        F.mse_loss(biotorch_forward(net, x), y).backward()
        theirs = [(layer.weight.grad.clone(), layer.bias.grad.clone()) for layer in net]
        weights = [layer.weight.detach().clone().requires_grad_() for layer in net]
        biases = [layer.bias.detach().clone().requires_grad_() for layer in net]
        loss = F.mse_loss(walign_forward(weights, biases, feedback, x), y)
        ours = torch.autograd.grad(loss, weights + biases)
        for i, (w_grad, b_grad) in enumerate(theirs):
            assert torch.allclose(ours[i], w_grad, atol=1e-12, rtol=1e-10), (kind, step, "weight", i)
            assert torch.allclose(ours[3 + i], b_grad, atol=1e-12, rtol=1e-10), (kind, step, "bias", i)
        if kind != "fa":  # the error reached the lower layers through a sign-concordant matrix, not W
            assert not torch.equal(feedback[1], net[1].weight.detach())
        with torch.no_grad():  # an SGD step, so the next feedback follows the moved weights' signs
            for layer in net:
                layer.weight -= 0.5 * layer.weight.grad
                layer.bias -= 0.5 * layer.bias.grad


def biotorch_resnet20(kind: str):
    """biotorch's CIFAR ResNet-20: its plain model for backprop, converted to FA or uSF layers otherwise."""
    import contextlib
    import io
    if kind == "normal":
        from biotorch.models.small_resnet import resnet20
        return resnet20(num_classes=10).double().train()
    from importlib import import_module
    with contextlib.redirect_stdout(io.StringIO()):  # it announces each conversion
        net = import_module(f"biotorch.models.{kind}.resnet").resnet20(num_classes=10)
    return net.double().train()


@pytest.mark.parametrize("kind", ["normal", "fa", "usf"])
def test_walign_resnet20_equals_biotorchs(kind):
    """walign's resnet20 under the standard parameterisation is biotorch's CIFAR ResNet-20 in training
    mode (its batch norms start at scale 1 and shift 0 and use the batch's statistics): the same
    weights give the same outputs, and backprop's, FA's and uSF's gradients are the same, the error
    passing the shortcuts (subsampled, zero-padded identities) as biotorch's does."""
    from walign.archs.resnet import ResNet
    theirs_net = biotorch_resnet20(kind)
    layers = [m for m in theirs_net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    ours_net = ResNet(3, 8, 10, width=16, depth=20, parameterization="standard").double()
    assert len(layers) == len(ours_net.feedback_weights()) == 20
    with torch.no_grad():
        for theirs, ours in zip(layers, ours_net.feedback_weights(), strict=True):
            ours.copy_(theirs.weight)
        ours_net.fc_bias.copy_(layers[-1].bias)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randn(6, 10, generator=g, dtype=torch.float64)
    out = theirs_net(x)
    feedback = None if kind == "normal" else [feedback_of(layer, kind) for layer in layers]
    ours_out = ours_net(x, feedback=feedback)
    assert torch.allclose(ours_out, out, atol=1e-12, rtol=1e-10)
    F.mse_loss(out, y).backward()
    ours = torch.autograd.grad(F.mse_loss(ours_out, y), [*ours_net.feedback_weights(), ours_net.fc_bias])
    expected = [layer.weight.grad for layer in layers] + [layers[-1].bias.grad]
    assert len(ours) == len(expected) == 21
    for i, (mine, theirs) in enumerate(zip(ours, expected, strict=True)):
        assert torch.allclose(mine, theirs, atol=1e-12, rtol=1e-9), (kind, i)
    if kind != "normal":  # the lower layers' gradients did go through the feedback matrices
        plain = torch.autograd.grad(F.mse_loss(ours_net(x), y), ours_net.weights[0])[0]
        assert not torch.allclose(plain, ours[0], atol=1e-9)
