"""The network pieces that decide whether numbers can match the paper (docs/method.md §1, §2 and §4.1)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from walign.nets import ConvNet, NetSpec, batch_stat_norm, initialize, same_padding
from walign.rules import build_rule, mse, output_error

torch.set_default_dtype(torch.float32)


def test_initial_kernels_follow_the_released_rng_layout():
    """docs/method.md §1.3: seed 99, width 8: kernels drawn as (C_out, 9 C_in) matrices in (kh, kw, c_in)
    column order, layer after layer, then the head."""
    net = ConvNet(NetSpec("cifar", width=8))
    initialize(net, 99)
    rng = np.random.RandomState(99)
    np.random.seed(99)  # the legacy global RNG, as the released code used it
    first = np.random.randn(8, 27)
    assert np.array_equal(first, rng.randn(8, 27))
    hwio = np.zeros((3, 3, 3, 8))  # TF layout, filled entry by entry from the matrix
    for kh in range(3):
        for kw in range(3):
            for c in range(3):
                for o in range(8):
                    hwio[kh, kw, c, o] = first[o, (kh * 3 + kw) * 3 + c]
    expected = torch.from_numpy(hwio.transpose(3, 2, 0, 1)).float()  # HWIO -> OIHW
    assert torch.equal(net.weights[0].data, expected)
    for l in range(1, 7):
        draw = rng.randn(8, 72)
        assert torch.equal(net.weights[l].data, torch.from_numpy(
            draw.reshape(8, 3, 3, 8).transpose(0, 3, 1, 2).copy()).float())
    assert torch.equal(net.fc_weight.data, torch.from_numpy(rng.randn(10, 8)).float())
    assert all(float(b.detach().abs().sum()) == 0 for b in net.biases)


def test_rules_without_own_draws_share_the_initial_weights_and_fa_dfa_differ_from_layer_2():
    def weights(rule):
        net = ConvNet(NetSpec("cifar", width=8))
        build_rule(rule, net, 99)
        return {name: p.detach().clone() for name, p in net.named_parameters()}
    normal = weights("normal")
    for rule in ("align_ada", "align_zero", "align_prop", "last_layer"):
        other = weights(rule)
        assert all(torch.equal(normal[name], other[name]) for name in normal), rule
    for rule in ("fa", "dfa"):
        other = weights(rule)
        assert torch.equal(other["weights.0"], normal["weights.0"]), rule
        assert not torch.equal(other["weights.1"], normal["weights.1"]), rule


def test_standard_parameterization_computes_the_same_function_at_init():
    x = torch.rand(16, 3, 32, 32)
    ntk, std = ConvNet(NetSpec("cifar", 8)), ConvNet(NetSpec("cifar", 8, parameterization="standard"))
    initialize(ntk, 5)
    initialize(std, 5)
    assert torch.allclose(ntk(x), std(x), atol=1e-4)
    assert torch.allclose(std.weights[0] * math.sqrt(27), ntk.weights[0], atol=1e-6)


def test_batch_norm_normalises_every_element_over_the_batch_only():
    """docs/method.md §2.2: zero mean and unit biased variance per (c, h, w), not per channel."""
    u = torch.randn(20, 4, 5, 5) * (torch.rand(1, 4, 5, 5) * 3 + 0.5) + torch.randn(1, 4, 5, 5)
    h = batch_stat_norm(u)
    assert torch.allclose(h.mean(0), torch.zeros(4, 5, 5), atol=1e-5)
    assert torch.allclose(h.var(0, unbiased=False), torch.ones(4, 5, 5), atol=1e-3)
    per_channel = (u - u.mean((0, 2, 3), keepdim=True)) / u.std((0, 2, 3), unbiased=False, keepdim=True)
    assert not torch.allclose(h, per_channel, atol=1e-2)


def test_conv_bias_gradient_vanishes_through_batch_norm():
    net = ConvNet(NetSpec("cifar", 8))
    initialize(net, 1)
    x, y = torch.rand(10, 3, 32, 32), torch.randn(10, 10)
    mse(net(x), y).backward()
    for w, b in zip(net.weights, net.biases):
        assert b.grad.abs().max() < 1e-5 * max(1.0, float(w.grad.abs().max()))


def test_batch_norm_uses_batch_statistics_at_evaluation_too():
    """No eval mode: an example's output depends on the rest of its batch."""
    net = ConvNet(NetSpec("kmnist", 8, in_channels=1, image_size=28))
    initialize(net, 3)
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        together, half = net(x), net(x[:4])
    assert not torch.allclose(together[:4], half, atol=1e-4)


@pytest.mark.parametrize("size,stride,pads", [(32, 1, (1, 1)), (32, 2, (0, 1)), (224, 4, (0, 0)),
                                              (28, 2, (0, 1)), (7, 2, (1, 1)), (14, 2, (0, 1))])
def test_same_padding_matches_tensorflow(size, stride, pads):
    """docs/method.md §2.3: output ceil(n/s); the odd padded row goes after."""
    assert same_padding(size, stride) == pads
    assert (size + sum(pads) - 3) // stride + 1 == math.ceil(size / stride)


def test_strided_layer_samples_the_tensorflow_grid():
    """Stride 2 on 32 pads (0, 1): output pixel i reads input rows 2i..2i+2 (PyTorch's symmetric
    padding=1 would read 2i-1..2i+1)."""
    net = ConvNet(NetSpec("cifar", 1))
    l = 3  # the first stride-2 layer
    a = torch.zeros(2, 1, 32, 32)
    a[:, 0, 0, 0] = 1.0  # only the top-left pixel is on
    with torch.no_grad():
        net.weights[l].zero_()
        net.weights[l][0, 0, 0, 0] = 1.0  # kernel tap (0, 0): reads row 2i, column 2j
        u = F.conv2d(F.pad(a, net.pads[l]), net.weights[l], stride=2)
    assert u[0, 0, 0, 0] == 1.0 and u.sum() == 2.0


def test_feature_shapes_of_the_three_architectures():
    assert [s[1] for s in ConvNet(NetSpec("cifar", 4)).feature_shapes] == [32, 32, 32, 16, 16, 8, 8]
    assert [s[1] for s in ConvNet(NetSpec("kmnist", 4, 1, 28)).feature_shapes] == [28, 14, 7]
    assert [s[1] for s in ConvNet(NetSpec("imagenet", 4, 3, 224, 1000)).feature_shapes] == [56, 28, 28, 14, 14, 7, 7]


def test_output_error_is_the_gradient_of_the_mean_squared_error():
    """docs/method.md §4.1: dL/dlogits = 2 (logits - y) / (B K)."""
    logits = torch.randn(6, 10, requires_grad=True)
    y = torch.randn(6, 10)
    (grad,) = torch.autograd.grad(mse(logits, y), logits)
    assert torch.allclose(grad, output_error(logits.detach(), y))
    assert torch.allclose(grad, 2 * (logits.detach() - y) / 60)


def test_bad_network_values_are_rejected():
    with pytest.raises(ValueError, match="width"):
        NetSpec("cifar", 0)
    with pytest.raises(ValueError, match="activation"):
        NetSpec("cifar", 8, activation="gelu")


def test_batch_norm_backward_is_the_exact_batch_coupled_gradient():
    """The hand-written backward equals autograd through the plain formula (and passes gradcheck)."""
    u = torch.randn(7, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(batch_stat_norm, (u,))
    centred = u - u.mean(0, keepdim=True)
    plain = centred / torch.sqrt(centred.square().mean(0, keepdim=True) + 1e-6)
    g = torch.randn_like(u)
    (want,) = torch.autograd.grad(plain, u, g)
    (got,) = torch.autograd.grad(batch_stat_norm(u), u, g)
    assert torch.allclose(got, want, atol=1e-12)
