"""Arithmetic precision of a run: true float32, TF32 tensor cores, or bfloat16 autocast.

The paper's numbers come from float32 arithmetic, so ``fp32`` is the default and means it. Left
alone, PyTorch lets cuDNN run float32 convolutions in TF32 (a 10-bit mantissa) on Ampere and later
GPUs, so a run's numbers would depend on the card. The faster modes are opt-in:

* ``fp32``: TF32 off for matmuls and cuDNN; everything computes in float32.
* ``tf32``: TF32 allowed for matmuls and convolutions (NVIDIA Ampere or later; elsewhere a no-op).
  Tensors stay float32; only the products inside the tensor cores round their inputs.
* ``bf16``: ``torch.autocast`` to bfloat16 around the rule's step. Convolutions and matmuls run in
  bfloat16, the per-element batch norm and the losses in float32 (the bias add promotes back),
  and parameters, gradients and the optimizer stay float32. Works on CUDA and on the CPU.

Use::

    info = precision.configure(name, device, dtype)        # once, before training; into summary.json
    with precision.autocast(name, device):
        step = rule.pseudo_gradients(x, targets)            # forward and backward
    ...; optimizer.step()                                   # outside autocast

The flags are process-wide. They are set through ``torch.backends.*.fp32_precision`` where torch
has it (2.9+; the older ``allow_tf32`` flags are slated for deprecation) and through
``allow_tf32`` otherwise. Once the new API has been used, reading the legacy
``torch.backends.cudnn.allow_tf32`` raises in torch 2.9+: read ``fp32_precision`` instead.
"""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "tf32", "bf16")


def _new_api() -> bool:
    return hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(torch.backends.cudnn, "conv")


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TF32 in CUDA matmuls and cuDNN convolutions (and cuDNN RNNs)."""
    if _new_api():
        mode = "tf32" if enabled else "ieee"
        cudnn = torch.backends.cudnn
        cudnn.fp32_precision = mode  # the CUDA-wide default, which torch's own compilers read
        cudnn.conv.fp32_precision = mode
        cudnn.rnn.fp32_precision = mode
        torch.backends.cuda.matmul.fp32_precision = mode
    else:
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def check(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def configure(precision: str, device, dtype: torch.dtype = torch.float32) -> dict:
    """Set the backend flags for ``precision`` on ``device`` and return what is in effect.

    The result is meant for summary.json: ``{"precision": name}``, plus ``precision_note`` when
    the mode cannot do what its name says here (TF32 on a CPU or a pre-Ampere GPU; either fast
    mode on a float64 run, such as the Add-task RNN, since TF32 and autocast touch only float32).
    TF32 is switched off for ``fp32`` and ``bf16`` alike, so the float32 parts stay float32.
    """
    check(precision)
    device = torch.device(device)
    set_tf32(precision == "tf32")
    info = {"precision": precision}
    if precision == "fp32":
        return info
    if dtype == torch.float64:
        info["precision_note"] = f"no-op: the run computes in float64, and {precision} affects only float32 work"
    elif precision == "tf32" and device.type != "cuda":
        info["precision_note"] = f"no-op on {device.type}: TF32 exists only on NVIDIA GPUs (Ampere and later)"
    elif precision == "tf32" and torch.cuda.get_device_capability(device) < (8, 0):
        major, minor = torch.cuda.get_device_capability(device)
        info["precision_note"] = f"no-op on this GPU (compute capability {major}.{minor}): TF32 needs 8.0 or later"
    elif precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        info["precision_note"] = "this GPU has no native bfloat16: autocast emulates it (slow)"
    return info


def autocast(precision: str, device):
    """The context to run a rule's step in: bfloat16 autocast for ``bf16``, nothing otherwise.

    Put only ``rule.pseudo_gradients`` (forward and backward) inside it; the optimizer step and
    the epoch's bookkeeping belong outside.
    """
    check(precision)
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
