"""Exact convolution and matmul FLOPs of one training step, and of a whole run.

Why: GPU time is bought by the hour, and a sweep should be priced before it is launched. The
FLOP count also turns a measured ms/step into achieved TFLOP/s (benchmarks/step_time.py), which
says how far a rule's implementation is from the card's peak.

What is counted: the convolutions and matrix products, at 2 FLOPs per multiply-add. Elementwise
work (batch norm, activations, pooling, the loss, the optimizer) is left out: per conv layer it is
a few operations per output element, against 9 * C_in multiply-adds for the convolution.

The shapes come from the network itself: each architecture entry's ``geometry`` (walign/archs/),
the same description the network's weights are built from. A weight layer with C_in inputs,
C_out outputs, k kernel taps and P output positions (a 3x3 conv: k = 9, P = H_out * W_out; a
linear map: k = P = 1) costs 2 * B * P * C_out * k * C_in FLOPs for each of its three products:
the forward, the input gradient and the weight gradient. The head (pooled features F -> classes)
costs 2 * B * F * classes for each of its three.

What one step of each rule computes, from the ``passes`` attribute of its class (walign/rules/base.py
``Passes``; F forward, I input gradient, W weight gradient; conv I counts layers 2..L only, since
no rule needs the gradient of the data; RNN rows are per time step, the head being the readout):

| rule | family | conv F | conv I | conv W | head F | head I | head W | e D_l | what runs |
|---|---|---:|---:|---:|---:|---:|---:|---:|---|
| normal | cnn | 1 | 1 | 1 | 1 | 1 | 1 | 0 | backprop |
| align_ada | cnn | 2 | 1 | 1 | 2 | 2 | 1 | 0 | current forward on detached inputs + local weight gradients; frozen forward + input gradients; e W_fc(0) |
| align_zero | cnn | 2 | 1 | 1 | 2 | 1 | 1 | 0 | current forward (no grad); frozen forward, input and weight gradients |
| align_prop | cnn | 1 | 1 | 1 | 1 | 1 | 1 | 0 | as backprop; input gradients through the initial kernels |
| fa | cnn | 1 | 1 | 1 | 1 | 1 | 1 | 0 | as backprop; input gradients through random kernels |
| dfa | cnn | 1 | 0 | 1 | 1 | 0 | 1 | 1 | forward + weight gradients; e D_l per layer, no input gradients |
| last_layer | cnn | 1 | 0 | 0 | 1 | 0 | 1 | 0 | forward (no grad) + the head's weight gradient |
| sign_symmetry | cnn | 1 | 1 | 1 | 1 | 1 | 1 | 0 | as backprop; input gradients through sign(W) |
| usf | cnn | 1 | 1 | 1 | 1 | 1 | 1 | 0 | as sign_symmetry: input gradients through sign(W) |
| frsf | cnn | 1 | 1 | 1 | 1 | 1 | 1 | 0 | as backprop; input gradients through abs(M) * sign(W), M fixed |
| brsf | cnn | 1 | 1 | 1 | 1 | 1 | 1 | 0 | as backprop; the same with M drawn every step (elementwise, not counted) |
| gd_wstar | cnn | 2 | 2 | 2 | 2 | 2 | 1 | 0 | backprop + the frozen network's forward, input and kernel gradients |
| normal | rnn | 1 | 1 | 1 | 1 | 1 | 1 | 0 | BPTT |
| align_ada | rnn | 2 | 1 | 1 | 2 | 1 | 1 | 0 | current forward + local weight gradients; frozen forward + BPTT |
| align_zero | rnn | 2 | 1 | 1 | 2 | 1 | 1 | 0 | current forward (no grad); frozen forward + BPTT with weight gradients |
| readout_only | rnn | 1 | 1 | 0 | 1 | 1 | 1 | 0 | BPTT into S and the readout only |

So Align-ada's and Align-zero's convolution work per step are equal: each is backprop's plus one
forward pass of the frozen network (Align-ada trades the current network's input gradients for
the frozen network's). gd_wstar is two backprops minus the frozen head's weight gradient.

The RNN (walign/rnn.py, n units, batch B, T = 100 steps): per step the recurrent map costs
2 B n^2, the input map and the readout 2 B n each (the input map is a rank-1 (B, 1) x (1, n)
product, which the code computes as a broadcast multiply; it has no input gradient). Align-ada's
released form takes the current recurrent weight gradient at T - 1 steps, not T (the last state
feeds no frozen step); the count uses T, over by 1 / T of that term.

A run adds evaluation, one forward pass per evaluated image (the validation split every epoch,
the official test split too when eval_test is on; the Add task scores its 100 test and 300
training sequences), and, for gd_wstar, the alignment scoring of each scored epoch: per scored
layer, ``iterations`` x (one convolution of ``probes`` probes with the 2 stacked kernels, 3 with the
permuted baseline, plus one adjoint convolution per kernel), and the exact kernel score's three
(C_out, 9 C_in) Gram products per pair.

The per-sweep table (runs, PFLOP, GPU-hours) is walign/grids.py's: ``python -m walign.grids``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

KERNEL_TAPS = 9  # 3 x 3
ROOT = Path(__file__).resolve().parents[1]


def geometry(arch: str, width: int, channels: int = 3, image_size: int = 32, classes: int = 10,
             arch_options: dict | None = None):
    """The weight layers and head of architecture ``arch`` (walign/archs/) for these inputs."""
    from .archs import entry
    from .datasets.base import DataShape
    return entry(arch).geometry(DataShape(0, 0, 0, channels, image_size, classes, arch), width, **(arch_options or {}))


def conv_layers(arch: str, width: int, channels: int = 3, image_size: int = 32,
                strides: list[int] | None = None) -> list[tuple[int, int, int, int]]:
    """(C_in, C_out, H_out, W_out) of every conv layer of one of the paper's networks, or of the
    chain of 3x3 convolutions with ``strides`` that the alignment estimator scores."""
    if strides is None:
        return [(l.c_in, l.c_out, math.isqrt(l.positions), math.isqrt(l.positions))
                for l in geometry(arch, width, channels, image_size).layers]
    layers, size = [], image_size
    for stride in strides:
        size = -(-size // stride)
        layers.append((channels, width, size, size))
        channels = width
    return layers


def conv_pass(batch: int, layer: tuple[int, int, int, int]) -> int:
    """FLOPs of one forward, input-gradient or weight-gradient convolution of a layer."""
    c_in, c_out, h, w = layer
    return 2 * batch * h * w * c_out * KERNEL_TAPS * c_in


def rule_passes(rule: str, family: str = "cnn"):
    from .rules import RULES
    return RULES[rule][family].passes


def step_flops(rule: str, width: int, batch: int, arch: str = "cifar", channels: int = 3, image_size: int = 32,
               classes: int = 10, rule_options: dict | None = None, passes=None,
               arch_options: dict | None = None) -> dict:
    """FLOPs of one training step of a feed-forward network, by kind: the weight layers'
    ``forward``, ``input_grad`` (layers 2..L), ``weight_grad``, the ``head``'s three, DFA's
    ``projection``, and their ``total``. ``layers`` holds one pass per layer (the unit everything
    else is counted in)."""
    p = passes or rule_passes(rule, "cnn")
    shapes = geometry(arch, width, channels, image_size, classes, arch_options)
    unit = [2 * batch * layer.macs() for layer in shapes.layers]
    head = 2 * batch * shapes.features * classes
    out = {"layers": unit, "forward": p.forward * sum(unit), "input_grad": p.input_grad * sum(unit[1:]),
           "weight_grad": p.weight_grad * sum(unit),
           "head": (p.head_forward + p.head_input_grad + p.head_weight_grad) * head, "projection": 0}
    if p.projection:
        shared = (rule_options or {}).get("projection", "full") == "shared"
        out["projection"] = p.projection * sum(2 * batch * classes * l.c_out * (1 if shared else l.positions)
                                               for l in shapes.layers)
    out["total"] = sum(out[k] for k in ("forward", "input_grad", "weight_grad", "head", "projection"))
    return out


def forward_flops(width: int, batch: int, arch: str = "cifar", channels: int = 3, image_size: int = 32,
                  classes: int = 10, arch_options: dict | None = None) -> int:
    """One forward pass of the network (what evaluation costs per batch)."""
    shapes = geometry(arch, width, channels, image_size, classes, arch_options)
    return sum(2 * batch * layer.macs() for layer in shapes.layers) + 2 * batch * shapes.features * classes


def rnn_step_flops(rule: str, width: int, batch: int = 50, length: int = 100, passes=None) -> dict:
    """FLOPs of one Add-task RNN step over a whole sequence: ``recurrent`` (the n x n map, forward
    and gradients), ``input`` (the rank-1 input map), ``readout`` and ``total``."""
    p = passes or rule_passes(rule, "rnn")
    square, line = 2 * batch * width * width, 2 * batch * width
    out = {"recurrent": length * (p.forward + p.input_grad + p.weight_grad) * square,
           "input": length * (p.forward + p.weight_grad) * line,
           "readout": length * (p.head_forward + p.head_input_grad + p.head_weight_grad) * line}
    out["total"] = out["recurrent"] + out["input"] + out["readout"]
    return out


def rnn_forward_flops(width: int, batch: int = 50, length: int = 100) -> int:
    return length * (2 * batch * width * width + 2 * 2 * batch * width)


def scoring_flops(width: int, arch: str = "cifar", channels: int = 3, image_size: int = 32,
                  iterations: int = 100, probes: int = 100, permuted: bool = False,
                  score_layers: int | None = None, score_strides: list[int] | None = None) -> int:
    """One alignment scoring (walign.rules.gd_wstar.GradientDescentWithWStar.scores)."""
    from .nets import ARCHITECTURES  # the estimator scores the paper's conv chains only
    strides = list(score_strides or ARCHITECTURES[arch][:score_layers or len(ARCHITECTURES[arch])])
    kernels = 3 if permuted else 2
    total = 0
    for c_in, c_out, h, w in conv_layers(arch, width, channels, image_size, strides):
        total += iterations * 2 * kernels * conv_pass(probes, (c_in, c_out, h, w))  # stacked conv + adjoints
        total += (2 if permuted else 1) * 3 * 2 * c_out * c_out * KERNEL_TAPS * c_in  # kernel scores
    return total


def scored_epochs(score_epochs, epochs: int) -> int:
    if score_epochs == "all":
        return epochs
    return len({int(e) for e in (score_epochs or ()) if 1 <= int(e) <= epochs})


def cnn_run_cost(spec, shape) -> dict:
    """FLOPs of a CNN run (``spec`` a walign.spec.RunSpec, ``shape`` its data set's
    walign.datasets.DataShape): see ``run_cost``."""
    from .scale import smoke_sizes
    batch, epochs, options = spec.resolved_batch_size(), spec.epochs, spec.rule_options or {}
    train_size, val_size, test_size = smoke_sizes(shape.train, shape.val, shape.test, spec.scale)
    shape = dataclasses.replace(shape, train=train_size, val=val_size, test=test_size)
    arch = shape.arch if spec.arch == "auto" else spec.arch
    net = dict(arch=arch, channels=shape.channels, image_size=shape.image_size, classes=shape.classes,
               arch_options=spec.resolved_arch_options())
    step = step_flops(spec.rule, spec.width, batch, rule_options=options, **net)["total"]
    steps, rest = divmod(shape.train, batch)
    train = steps * step
    if rest and not shape.whole_batches:
        train += step_flops(spec.rule, spec.width, rest, rule_options=options, **net)["total"]
        steps += 1
    images = sum(n if not shape.whole_batches else n // batch * batch
                 for n in (shape.val, shape.test if spec.eval_test else 0))
    evaluation = images * forward_flops(spec.width, 1, **net)
    shapes = geometry(width=spec.width, **net)
    alignment = 0
    if spec.rule == "gd_wstar":
        scorings = scored_epochs(options.get("score_epochs", [epochs]), epochs)
        alignment = scorings * scoring_flops(
            spec.width, arch, shape.channels, shape.image_size, options.get("iterations", 100),
            options.get("probes", 100), bool(options.get("permuted", False)), options.get("score_layers"),
            options.get("score_strides"))
    return {**_whole_run(step, steps, train, evaluation, alignment, epochs), "weight_bytes": 4 * shapes.weight_count()}


def rnn_run_cost(spec) -> dict:
    """FLOPs of an Add-task RNN run: see ``run_cost``."""
    batch, data = spec.resolved_batch_size(), spec.data_options or {}
    from .scale import smoke_sizes
    length, sequences = int(data.get("length", 100)), int(data.get("sequences", 400))
    train_size, _, test_size = smoke_sizes(int(data.get("train_size", 300)), 0, sequences - int(data.get("train_size", 300)),
                                           spec.scale)
    step = rnn_step_flops(spec.rule, spec.width, batch, length)["total"]
    steps = train_size // batch
    batches = test_size // batch + train_size // batch
    evaluation = batches * rnn_forward_flops(spec.width, batch, length)
    weight_bytes = (8 if data.get("precision", "float64") == "float64" else 4) * (spec.width ** 2 + 2 * spec.width)
    return {**_whole_run(step, steps, steps * step, evaluation, 0, spec.epochs), "weight_bytes": weight_bytes}


def _whole_run(step, steps, train, evaluation, alignment, epochs) -> dict:
    return {"step": step, "steps_per_epoch": steps, "train": epochs * train, "evaluation": epochs * evaluation,
            "alignment": alignment, "total": epochs * (train + evaluation) + alignment}


def run_cost(spec) -> dict:
    """FLOPs of the whole run a ``walign.spec.RunSpec`` describes: ``step`` (one full-batch step),
    ``steps_per_epoch``, ``train``, ``evaluation``, ``alignment`` and ``total``; and
    ``weight_bytes``, the size of the network's weights (conv kernels and head, or the RNN's
    recurrent, input and readout weights; biases and batch-norm values left out). Each data set's
    entry knows how its model family is costed (``DataSet.flops``)."""
    return spec.entry.flops(spec)


def run_flops(spec) -> float:
    """Total convolution and matmul FLOPs of the run ``spec`` (a walign.spec.RunSpec); 0 for a
    data set that cannot say (a plugin without ``shape`` or ``flops``): its runs are then
    estimated at the fixed per-run overhead alone."""
    try:
        return float(run_cost(spec)["total"])
    except NotImplementedError:
        return 0.0


def format_flops(x: float) -> str:
    """'3.1 PFLOP', '12.4 TFLOP', '950.0 FLOP'."""
    for power, unit in ((18, "EFLOP"), (15, "PFLOP"), (12, "TFLOP"), (9, "GFLOP"), (6, "MFLOP"), (3, "kFLOP")):
        if abs(x) >= 10 ** power:
            return f"{x / 10 ** power:.1f} {unit}"
    return f"{x:.1f} FLOP"


def measured_throughput(results: Path = ROOT / "benchmarks" / "results") -> tuple[str, dict] | None:
    """The newest GPU measurement in results/gpu-*.txt: (card, {(rule, width): TFLOP/s}) at fp32,
    from the ``throughput {json}`` lines benchmarks/gpu_check.sh writes, for the paper's CIFAR net;
    rows measured on another network (``"arch"`` in the line) are keyed (rule, width, arch). None if
    there is none."""
    for path in sorted(Path(results).glob("gpu-*.txt"), reverse=True):
        rates, card = {}, None
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("throughput {"):
                continue
            row = json.loads(line.split(" ", 1)[1])
            if row.get("device", "").startswith("cuda") and row.get("precision") == "fp32" and row.get("tflops"):
                card = row["card"]
                arch = row.get("arch", "cifar")
                key = (row["rule"], int(row["width"])) + ((arch,) if arch != "cifar" else ())
                rates[key] = float(row["tflops"])
        if rates:
            return card, rates
    return None


def rate_for(rates: dict, rule: str, width: int, arch: str = "auto") -> float | None:
    """Measured TFLOP/s for a rule (Normal's if the rule was not measured) at the nearest measured
    width (in log2), on ``arch`` where that network was measured, else on the paper's CIFAR net.
    Widths below the smallest measured one are latency-bound on a GPU, so their hours from this
    rate are a lower bound."""
    nets = ([(arch,)] if arch not in ("auto", "cifar", "kmnist", "imagenet") else []) + [()]  # () : the CIFAR net
    for net in nets:
        for name in (rule, "normal"):
            widths = [key[1] for key in rates if key[0] == name and key[2:] == net]
            if widths:
                nearest = min(widths, key=lambda w: abs(math.log2(w) - math.log2(width)))
                return rates[(name, nearest) + net]
    return None
