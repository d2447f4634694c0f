"""Precision modes (walign/precision.py): every CNN rule steps under bfloat16 autocast on the CPU
and returns float32 gradients close to the float32 ones; the flags say what is in effect."""
import pytest
import torch
import torch.nn.functional as F

from walign import precision
from walign.nets import ConvNet, NetSpec
from walign.rules import build_rule

CNN_RULES = ["normal", "align_ada", "align_zero", "align_prop", "fa", "dfa", "last_layer", "gd_wstar"]


def tf32_flags() -> dict:
    """Whether TF32 is allowed now, for matmuls and for convolutions (the process-wide flags)."""
    if precision._new_api():
        return {"matmul": torch.backends.cuda.matmul.fp32_precision == "tf32",
                "conv": torch.backends.cudnn.conv.fp32_precision == "tf32"}
    return {"matmul": bool(torch.backends.cuda.matmul.allow_tf32), "conv": bool(torch.backends.cudnn.allow_tf32)}


@pytest.fixture(autouse=True)
def restore_flags():
    """configure() sets process-wide flags; put torch's back as they were for the other tests."""
    backends = torch.backends
    if hasattr(backends.cuda.matmul, "fp32_precision"):
        nodes = [backends.cudnn, backends.cudnn.conv, backends.cudnn.rnn, backends.cuda.matmul]
        before = [n.fp32_precision for n in nodes]
        yield
        for node, value in zip(nodes, before):
            node.fp32_precision = value
    else:
        before = backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32
        yield
        backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = before


def flat(grads):
    return torch.cat([g.flatten() for g in grads if g is not None])


@pytest.mark.parametrize("name", CNN_RULES)
def test_each_cnn_rule_steps_under_bf16_autocast_with_float32_gradients(name):
    torch.manual_seed(0)
    x = torch.rand(100, 3, 8, 8)
    y = F.one_hot(torch.arange(100) % 10, 10).float() - 0.1
    rule = build_rule(name, ConvNet(NetSpec("cifar", 8, image_size=8)), 99)
    reference = rule.pseudo_gradients(x, y)
    precision.configure("bf16", "cpu")
    with precision.autocast("bf16", "cpu"):
        step = rule.pseudo_gradients(x, y)
    assert all(g is None or g.dtype == torch.float32 for g in step.grads)
    assert [g is None for g in step.grads] == [g is None for g in reference.grads]
    assert step.loss.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa, and the per-element batch norm's backward cancels much of
    # each signal, so whole-gradient errors of a few percent are what bf16 gives here
    found, expected = flat(step.grads), flat(reference.grads)
    assert (found - expected).norm() / expected.norm() < 0.15
    assert F.cosine_similarity(found, expected, dim=0) > 0.99
    assert torch.allclose(step.loss, reference.loss, rtol=0.05)


def test_autocast_is_a_no_op_for_fp32_and_tf32():
    for name in ("fp32", "tf32"):
        with precision.autocast(name, "cpu"):
            assert not torch.is_autocast_enabled("cpu")
    with precision.autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_configure_reports_what_is_in_effect_on_the_cpu():
    assert precision.configure("fp32", "cpu") == {"precision": "fp32"}
    assert tf32_flags() == {"matmul": False, "conv": False}
    info = precision.configure("tf32", "cpu")
    assert info["precision"] == "tf32" and info["precision_note"].startswith("no-op on cpu")
    assert tf32_flags() == {"matmul": True, "conv": True}  # set, for a GPU in the same process
    assert precision.configure("bf16", "cpu") == {"precision": "bf16"}
    assert tf32_flags() == {"matmul": False, "conv": False}  # bf16 keeps the float32 parts float32
    assert "float64" in precision.configure("bf16", "cpu", torch.float64)["precision_note"]
    precision.configure("fp32", "cpu")
    assert tf32_flags() == {"matmul": False, "conv": False}


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="fp32, tf32, bf16"):
        precision.configure("fp16", "cpu")
    with pytest.raises(ValueError):
        precision.autocast("half", "cpu")
