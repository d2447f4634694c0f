"""Input-weight alignment scores (paper section 3; SPEC section 7).

The score of conv layer l compares two Gram matrices of weight changes from the same initial
weights W(0): Delta = D^T D for the gradient-descent network's change D = W(t) - W(0), and
Sigma = D*^T D* for the change of W*, which accumulates the frozen initial network's parameter
gradients driven by the GD network's output error (eq. 13). It is their cosine,
tr(Delta Sigma) / sqrt(tr(Delta^2) tr(Sigma^2)).

Two estimators:

* ``operator_score``: the released code's. Delta and Sigma are Gram matrices of the whole
  convolution operator (stride and SAME padding included), estimated with Gaussian probes shaped
  like the layer's input: v = conv^T(conv(z, D)), each iteration's batch rescaled by its mean
  |v|, sums over iterations, NaN iterations skipped.
* ``kernel_score``: exact, with kernels reshaped to (C_out, 9 C_in) matrices (an extension).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def gram_probe(z: torch.Tensor, kernel: torch.Tensor, stride: int, pads) -> torch.Tensor:
    """A^T A z for the operator A: z -> conv(pad(z), kernel) (the adjoint includes the padding)."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        out = F.conv2d(F.pad(z, pads), kernel, stride=stride)
        (back,) = torch.autograd.grad(out, z, grad_outputs=out)
    return back


def operator_score(delta: torch.Tensor, delta_star: torch.Tensor, input_shape, stride: int, pads,
                   iterations: int = 100, probes: int = 100, generator: torch.Generator | None = None) -> float:
    """The released estimator (SPEC 7.3) for one layer; ``input_shape`` is (C_in, H, W)."""
    wd = ww = dd = 0.0
    c_out = delta.shape[0]
    for _ in range(iterations):
        z = torch.randn((probes, *input_shape), generator=generator, device=delta.device, dtype=delta.dtype)
        v = gram_probe(z, delta, stride, pads) / c_out
        v_star = gram_probe(z, delta_star, stride, pads) / c_out
        v = v / v.abs().mean()
        v_star = v_star / v_star.abs().mean()
        terms = torch.stack([(v * v_star).flatten(1).sum(1).mean(), v.pow(2).flatten(1).sum(1).mean(),
                             v_star.pow(2).flatten(1).sum(1).mean()]).tolist()
        if any(math.isnan(t) for t in terms):
            continue
        wd, ww, dd = wd + terms[0], ww + terms[1], dd + terms[2]
    return wd / math.sqrt(ww * dd) if ww > 0 and dd > 0 else float("nan")


def kernel_score(delta: torch.Tensor, delta_star: torch.Tensor) -> float:
    """Exact score with kernels as (C_out, 9 C_in) matrices M: tr(M^T M M*^T M*) = |M M*^T|_F^2."""
    m, m_star = delta.flatten(1).double(), delta_star.flatten(1).double()
    cross = (m @ m_star.t()).pow(2).sum()
    norm = (m @ m.t()).pow(2).sum().sqrt() * (m_star @ m_star.t()).pow(2).sum().sqrt()
    return float(cross / norm) if norm > 0 else float("nan")


def permuted(weights: list[torch.Tensor], seed: int = 99) -> list[torch.Tensor]:
    """Each kernel with all its entries shuffled (Fig. 8's baseline): numpy RNG seeded ``seed`` at
    the start of the call, one permutation per layer in order."""
    rng = np.random.RandomState(seed)
    out = []
    for w in weights:
        order = torch.from_numpy(rng.permutation(w.numel())).to(w.device)
        out.append(w.flatten()[order].view_as(w))
    return out
