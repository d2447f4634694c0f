"""Training steps as one function, eager or compiled (``compile=true``).

Why compile: most runs of the paper's grids are narrow nets, whose steps are chains of small
kernels (per-element batch norm, activations, each rule's extra passes), each launched on its
own; compiling a whole step fuses them, and on CUDA replays it as a CUDA graph.

A step is ``step(x, target) -> loss``: the rule's pseudo-gradients, the parameters' ``.grad``,
and the optimizer's update. ``compile=false`` (the default) runs it as Python calls, exactly the
numbers the tests pin and the paper reproduction uses. ``compile=true`` hands the same function to
``torch.compile`` (on CUDA in mode "reduce-overhead", which captures the static-shape step as a
CUDA graph); evaluation goes through a compiled forward too. Compiled numbers equal eager ones to
float32 rounding, not bit for bit: fused kernels sum in another order.

* Layout: on the CPU the step takes its images in channels_last (NHWC) memory format. With
  NCHW images inductor mixes layouts inside the graph (it picks NHWC for the convolutions but
  keeps NCHW copies of padded inputs, which every convolution backward converts again); with
  NHWC images from the start it keeps one. Measured at width 16, 2 threads: Align-ada's compiled
  step took 0.74 of its time with NCHW images, Normal's the same (benchmarks/README.md). Values
  are the same up to float32 rounding; on CUDA the images keep their layout (not measured yet).
* Shapes: an in-memory split yields floor(N / B) batches of one shape, so a run compiles once; a
  batch of another shape (a DataLoader's partial last batch) runs eagerly instead of recompiling.
* The learning rate is a tensor in the optimizer (walign.train.make_optimizer), so it is data in
  the graph, not a constant: runs of a sweep over lr share one graph and hit inductor's cache.
* Each run starts from a fresh dynamo cache (its network is new, and a long sweep in one process
  would otherwise exhaust the recompile limit and fall back to eager without a word).
* A step that cannot be compiled fails the run with one line naming the rule and the reason;
  ``compile=false`` runs it.
"""
from __future__ import annotations

import os
import shutil
import time
from contextlib import nullcontext

import torch
from torch import nn

from .errors import ConfigError


class CompileError(RuntimeError):
    """torch.compile could not compile a rule's step; the message says why in one line."""


def check_compiler(device: torch.device) -> None:
    """What torch.compile needs on ``device`` besides torch: a C++ compiler on the CPU, Triton
    on CUDA. ConfigError (one line) if it is missing, before the run starts."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton
        if not has_triton():
            raise ConfigError("compile=true on cuda needs Triton, which this torch install lacks "
                              "(pip install triton, or run with compile=false)")
    elif device.type == "cpu":
        compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
        if not any(shutil.which(c) for c in compilers if c):
            raise ConfigError("compile=true on the cpu needs a C++ compiler (g++ or clang++, or $CXX), and none "
                              "is on PATH; install one or run with compile=false")


def make_step(rule, optimizer, autocast=nullcontext, release_grads: bool = False):
    """The training step of ``rule``: (inputs, targets) -> the batch's loss (a 0-d tensor)."""
    def step(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with autocast():
            out = rule.pseudo_gradients(x, target)
        for param, grad in zip(rule.params, out.grads):
            param.grad = grad
        optimizer.step()
        if release_grads:  # a CUDA graph owns its outputs: drop them before the next replay
            for param in rule.params:
                param.grad = None
        return out.loss
    return step


def mode_for(device: torch.device, mode: str | None = None) -> str:
    """torch.compile's mode: ``mode`` if given, else CUDA graphs on CUDA and the default elsewhere."""
    return mode or ("reduce-overhead" if device.type == "cuda" else "default")


class CompiledStep:
    """``make_step`` through torch.compile, timed on its first call (the compile), with batches
    of another shape than the first run eagerly. ``channels_last`` (default: on the CPU) hands
    the compiled step its images in NHWC memory format (module docstring: Layout)."""

    def __init__(self, rule, optimizer, device: torch.device, autocast=nullcontext, mode: str | None = None,
                 channels_last: bool | None = None):
        torch._dynamo.reset()
        self.rule, self.compile_seconds, self.shape = rule, 0.0, None
        self.channels_last = device.type == "cpu" if channels_last is None else channels_last
        self.eager = make_step(rule, optimizer, autocast)
        compiled = torch.compile(make_step(rule, optimizer, autocast, release_grads=True),
                                 mode=mode_for(device, mode), dynamic=False)
        if rule.compile_traces_autograd:  # the setting is read when dynamo traces, and checked on each call
            compiled = torch._dynamo.config.patch(trace_autograd_ops=True)(compiled)
        self.compiled = compiled

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.shape is not None and x.shape != self.shape:
            return self.eager(x, target)
        if self.channels_last and x.dim() == 4:  # images (not an RNN's sequences)
            x = x.contiguous(memory_format=torch.channels_last)
        if self.shape is None:
            self.shape = x.shape
            started = time.perf_counter()
            loss = first_call(self.compiled, self.rule.name, x, target)
            self.compile_seconds += time.perf_counter() - started
            return loss
        return self.compiled(x, target)


def first_call(fn, rule: str, *args):
    """``fn(*args)``, with a compiler failure turned into one CompileError line."""
    try:
        return fn(*args)
    except (torch._dynamo.exc.Unsupported, torch._dynamo.exc.BackendCompilerFailed,
            torch._dynamo.exc.TorchRuntimeError, torch._dynamo.exc.InternalTorchDynamoError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CompileError(f"rule {rule} cannot be compiled ({type(err).__name__}: {reason}); "
                           f"run it with compile=false") from None
    except RuntimeError as err:  # a gradient at tensors a compiled graph computed (docs/extending.md)
        if "appears to not have been used in the graph" not in str(err):
            raise
        raise CompileError(f"rule {rule} cannot be compiled: its step differentiates with respect to tensors "
                           f"computed inside the compiled graph; set compile_traces_autograd = True on the rule, "
                           f"or run it with compile=false") from None


class CompiledForward(nn.Module):
    """The network's forward for evaluation through torch.compile (shape rule as CompiledStep);
    its parameters are the network's."""

    def __init__(self, net: nn.Module, device: torch.device):
        super().__init__()
        self.net, self.compile_seconds, self.shape = net, 0.0, None
        self.compiled = torch.compile(net, mode=mode_for(device), dynamic=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shape is None:
            self.shape = x.shape
            started = time.perf_counter()
            out = first_call(self.compiled, "evaluation", x)
            self.compile_seconds += time.perf_counter() - started
            return out
        return self.compiled(x) if x.shape == self.shape else self.net(x)
