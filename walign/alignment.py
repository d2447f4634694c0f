"""Input-weight alignment scores (paper section 3; docs/method.md §7).

The score of conv layer l compares two Gram matrices of weight changes from the same initial
weights W(0): Delta = D^T D for the gradient-descent network's change D = W(t) - W(0), and
Sigma = D*^T D* for the change of W*, which accumulates the frozen initial network's parameter
gradients driven by the GD network's output error (eq. 13). It is their cosine,
tr(Delta Sigma) / sqrt(tr(Delta^2) tr(Sigma^2)).

Two estimators:

* ``operator_score``: the released code's. Delta and Sigma are Gram matrices of the whole
  convolution operator (stride and SAME padding included), estimated with Gaussian probes shaped
  like the layer's input: v = conv^T(conv(z, D)), each iteration's batch rescaled by its mean
  |v|, sums over iterations, NaN iterations skipped (for every layer, as coded, or per layer).
* ``kernel_score``: exact, with kernels reshaped to (C_out, 9 C_in) matrices (an extension).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input


def gram_probes(z: torch.Tensor, kernels: list[torch.Tensor], stride: int, pads) -> list[torch.Tensor]:
    """A_k^T A_k z for each operator A_k: z -> conv(pad(z), kernel_k). One convolution with the
    kernels stacked along the output channels, then one adjoint (transposed) convolution each."""
    padded = F.pad(z, pads)
    out = F.conv2d(padded, torch.cat(kernels), stride=stride)
    left, right, top, bottom = pads
    h, w = padded.shape[2], padded.shape[3]
    backs = []
    for kernel, part in zip(kernels, out.split([k.shape[0] for k in kernels], dim=1)):
        back = conv2d_input(padded.shape, kernel, part.contiguous(), stride=stride)
        backs.append(back[:, :, top:h - bottom, left:w - right])
    return backs


def operator_terms(changes: list[torch.Tensor], pairs: list[tuple[int, int]], input_shape, stride: int,
                   pads, iterations: int = 100, probes: int = 100,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Every iteration's (WD, WW, DD) of the released estimator (docs/method.md §7.3) for several
    (change, change) pairs of one layer, all sharing the same probes; ``input_shape`` is
    (C_in, H, W). Shape (iterations, pairs, 3), float64, NaN where an iteration degenerates."""
    terms = torch.empty(iterations, len(pairs), 3, dtype=torch.float64, device=changes[0].device)
    for it in range(iterations):
        z = torch.randn((probes, *input_shape), generator=generator, device=changes[0].device,
                        dtype=changes[0].dtype)
        vs = gram_probes(z, changes, stride, pads)  # the code's extra 1/C_out cancels in the rescaling
        # each v is divided by its batch's mean |v|; done on the sums, not the tensors (same value)
        scale = [v.abs().mean() for v in vs]
        for row, (i, j) in enumerate(pairs):
            terms[it, row] = torch.stack([(vs[i] * vs[j]).sum() / (scale[i] * scale[j]),
                                          vs[i].pow(2).sum() / scale[i] ** 2,
                                          vs[j].pow(2).sum() / scale[j] ** 2]).double() / probes
    return terms


def skipped_iterations(layer_terms: list[torch.Tensor], nan_skip: str = "all_layers") -> list[torch.Tensor]:
    """Which iterations each layer leaves out, as booleans (iterations, pairs): each pair is its own
    estimate (the score, the permuted baseline). ``all_layers`` is the released code's rule (docs/method.md
    §7.3): an iteration in which any layer's value is NaN is dropped for every layer. ``per_layer``
    drops it only where it is NaN (walign's behaviour before the option existed), so one degenerate
    layer cannot blank the others' scores."""
    own = [t.isnan().any(dim=2) for t in layer_terms]
    if nan_skip == "per_layer":
        return own
    if nan_skip != "all_layers":
        raise ValueError(f"nan_skip must be 'all_layers' or 'per_layer', got {nan_skip!r}")
    anywhere = torch.stack(own).any(dim=0)
    return [anywhere] * len(own)


def combine(terms: torch.Tensor, skip: torch.Tensor) -> list[float]:
    """S = sum WD / sqrt(sum WW * sum DD) over the iterations not skipped, for each pair; summed
    iteration by iteration in order, masked on the device (no host read per iteration)."""
    sums = torch.zeros(terms.shape[1:], dtype=torch.float64, device=terms.device)
    for it in range(terms.shape[0]):
        sums += torch.where(skip[it].unsqueeze(1), torch.zeros_like(terms[it]), terms[it])
    return [float(wd / math.sqrt(ww * dd)) if ww > 0 and dd > 0 else float("nan") for wd, ww, dd in sums.tolist()]


def operator_score(delta: torch.Tensor, delta_star: torch.Tensor, input_shape, stride: int, pads,
                   iterations: int = 100, probes: int = 100, generator: torch.Generator | None = None) -> float:
    """The released estimator for one layer and one pair of weight changes (its own NaN
    iterations skipped)."""
    terms = operator_terms([delta, delta_star], [(0, 1)], input_shape, stride, pads, iterations, probes, generator)
    return combine(terms, skipped_iterations([terms], "per_layer")[0])[0]


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
