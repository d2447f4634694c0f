"""The training loop: any rule, any task, any optimizer, per-epoch evaluation (docs/method.md §4).

The loop knows rules only through ``Rule.pseudo_gradients``. Batch order follows the released
code: a numpy RNG seeded with the run seed right before training, one permutation of the training
set per epoch, then one permutation of the validation set from the same stream (so evaluation
order is part of the training-order stream, as in the paper's runs). The extra official-test
evaluation draws from a separate RNG so it cannot shift that stream.

``TrainState`` owns everything a resumed run needs and the checkpoint layout of it.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .augment import Augment
from .compiled import CompiledForward, CompiledStep, make_step
from .interrupt import Stopped  # noqa: F401  (raised through here; main.py names it)
from .rules import Rule

OPTIMIZERS = ("sgd", "adam")
TEST_RNG_OFFSET = 7919  # the official-test evaluation RNG is seeded with seed + this (mod 2**32)
NUMPY_SEEDS = 2**32     # numpy's legacy RandomState takes seeds 0 .. 2**32 - 1


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    batch_size: int
    optimizer: str = "sgd"
    seed: int = 99
    eval_test: bool = True
    compile: bool = False
    momentum: float = 0.0           # SGD's (the recipe of biotorch's tables: 0.9)
    weight_decay: float = 0.0       # L2 added to every pseudo-gradient by the optimizer
    lr_milestones: tuple = ()       # epochs after which the lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    augment: bool = False           # random crop and flip on the device (walign/augment.py)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (1-based): lr x gamma per milestone already passed."""
        return self.lr * self.lr_gamma ** sum(1 for m in self.lr_milestones if m < epoch)


def make_optimizer(name: str, params, lr: float, compiled: bool = False, momentum: float = 0.0,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """SGD (plain as the paper's unless ``momentum``/``weight_decay``) or Adam with TF1's defaults (Table 10).

    ``compiled``: for a step under torch.compile (walign/compiled.py) the lr is a tensor, data in
    the graph rather than a constant, so runs that differ only in lr share a compiled graph; SGD
    gives the same numbers either way. Adam takes a tensor lr only with ``capturable=True``
    (its step count kept on the device, which a CUDA graph needs), available on CUDA alone; on
    the CPU compiled Adam keeps a float lr. Eager Adam stays as it was: capturable computes the
    bias correction on tensors, a rounding change in the numbers the tests pin."""
    params = list(params)
    like = params[0] if params else torch.zeros(())
    tensor_lr = torch.tensor(lr, dtype=like.dtype, device=like.device)  # the parameters' precision (float64 RNN)
    decay = {"weight_decay": weight_decay} if weight_decay else {}  # (absent: the optimizers exactly as before)
    if name == "sgd":
        return torch.optim.SGD(params, lr=tensor_lr if compiled else lr, **({"momentum": momentum} if momentum else {}),
                               **decay)
    if name == "adam":
        capturable = compiled and like.device.type == "cuda"
        return torch.optim.Adam(params, lr=tensor_lr if capturable else lr,
                                betas=(0.9, 0.999), eps=1e-8, capturable=capturable, **decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


# ----------------------------------------------------------------------------- the state
def _numpy_state(rng: np.random.RandomState) -> dict:
    """A legacy numpy RNG's state as plain data (a checkpoint holds no numpy objects)."""
    kind, keys, pos, has_gauss, cached = rng.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached)}


def _set_numpy_state(rng: np.random.RandomState, state: dict) -> None:
    keys = state["keys"]
    if not isinstance(keys, torch.Tensor) or keys.shape != (624,) or keys.min() < 0 or keys.max() >= 2**32:
        raise ValueError("numpy RNG keys are not 624 32-bit words")
    rng.set_state(("MT19937", keys.numpy().astype(np.uint32), int(state["pos"]), int(state["has_gauss"]),
                   float(state["cached_gaussian"])))


class TrainState:
    """The mutable state of a run: the rule's tensors, the optimizer, the batch-order and
    evaluation RNGs, torch's RNGs, the epochs done and, after a stop signal, the position inside
    the epoch. ``snapshot`` turns it into tensors and plain values; ``restore`` checks and loads
    such a snapshot. Everything else (frozen network, feedback weights) is rebuilt from the seed,
    so a restored run continues with the numbers of one that was never interrupted."""

    def __init__(self, rule: Rule, cfg: TrainConfig):
        self.rule, self.cfg = rule, cfg
        self.optimizer = make_optimizer(cfg.optimizer, rule.params, cfg.lr, cfg.compile, cfg.momentum,
                                        cfg.weight_decay)
        device = next(rule.net.parameters()).device
        self.augment = Augment(cfg.seed, device) if cfg.augment else None
        self.rng = np.random.RandomState(cfg.seed)
        self.test_rng = np.random.RandomState((cfg.seed + TEST_RNG_OFFSET) % NUMPY_SEEDS)
        self.epoch = 0
        self.within: dict | None = None  # {"step", "order_rng", "loss_sum", "seconds"} mid-epoch

    def owner(self) -> dict:
        """What this state records of the run it belongs to, checked again on restore (besides
        the run's identity, which the app stores): a file copied from another run and given this
        run's identity still says whose it is."""
        return {"rule": self.rule.name, "family": self.rule.family, "lr": self.cfg.lr, "seed": self.cfg.seed,
                "epochs": self.cfg.epochs, "batch_size": self.cfg.batch_size, "optimizer": self.cfg.optimizer}

    def snapshot(self) -> dict:
        state = {"epoch": self.epoch, "owner": self.owner(), "rule": self.rule.state_dict(),
                 "optimizer": self.optimizer.state_dict(),
                 "rng": _numpy_state(self.rng), "test_rng": _numpy_state(self.test_rng),
                 "torch_rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
        if self.augment is not None:
            state["augment_rng"] = self.augment.state()
        if self.within is not None:
            within = self.within
            state["within_epoch"] = {"step": within["step"], "order_rng": _numpy_state(within["order_rng"]),
                                     "loss_sum": within["loss_sum"].detach().cpu().clone(),
                                     "seconds": within["seconds"]}
        return state

    def restore(self, state: dict) -> None:
        """Load a snapshot; ValueError (naming what is wrong) if it does not fit this run."""
        try:
            self.rule.load_state_dict(state["rule"])
            # the moments and step counts come from the file; lr and every other hyper-parameter
            # from this run's config
            hyper = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
            self.optimizer.load_state_dict(state["optimizer"])
            for group, mine in zip(self.optimizer.param_groups, hyper):
                group.update(mine)
            _set_numpy_state(self.rng, state["rng"])
            _set_numpy_state(self.test_rng, state["test_rng"])
            torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            if self.augment is not None:
                self.augment.load(state.get("augment_rng"))
            self.epoch, within = int(state["epoch"]), state.get("within_epoch")
            if within is not None:
                order_rng = np.random.RandomState()
                _set_numpy_state(order_rng, within["order_rng"])
                step = within["step"]
                if not isinstance(step, int) or step < 0 or within["loss_sum"].numel() != 1:
                    raise ValueError("the mid-epoch position is not a step and a loss")
                self.within = {"step": step, "order_rng": order_rng, "loss_sum": within["loss_sum"],
                               "seconds": float(within.get("seconds", 0.0))}
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as err:
            what = f"missing {err}" if isinstance(err, KeyError) else str(err).splitlines()[0][:200]
            raise ValueError(f"does not fit this run ({type(err).__name__}: {what})") from None
        owner = state.get("owner")
        if owner != self.owner():
            mine = self.owner()
            differ = [f"{key} {owner.get(key)!r}, not {mine[key]!r}" for key in mine if owner.get(key) != mine[key]] \
                if isinstance(owner, dict) else [f"records no owner ({owner!r})"]
            raise ValueError(f"was saved by another run ({'; '.join(differ)})")


# ----------------------------------------------------------------------------- the loop
def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's lr, in place (a compiled step's lr is a tensor in its graph: filled, not replaced)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_epoch(state: TrainState, data, step, progress, signals, on_signal, start: float) -> tuple[float, float]:
    """One epoch of ``step`` (from ``state.within`` if a stop signal saved the position inside
    it): (the epoch's mean training loss, seconds of its earlier parts)."""
    rule, cfg = state.rule, state.cfg
    loss_sum, steps, earlier = torch.zeros((), device=next(rule.net.parameters()).device), 0, 0.0
    if state.within is not None:  # resuming inside this epoch: same batch order, skip what was done
        state.rng.set_state(state.within["order_rng"].get_state())
        loss_sum, steps = state.within["loss_sum"].to(loss_sum.device), state.within["step"]
        earlier = state.within["seconds"]
    order_rng = np.random.RandomState()
    order_rng.set_state(state.rng.get_state())  # the epoch's batch order is drawn from this state
    for index, (x, labels) in enumerate(data.train.batches(state.rng, cfg.batch_size)):
        if index < steps:
            continue
        if state.augment is not None:
            x = state.augment(x)
        loss_sum += step(x, data.targets(labels))
        steps += 1
        if progress is not None:
            progress.update(1)
        if signals is not None and signals.pending is not None:
            state.within = {"step": steps, "order_rng": order_rng, "loss_sum": loss_sum,
                            "seconds": earlier + time.perf_counter() - start}
            if on_signal is not None:
                on_signal()
            signals.obey()  # ends the process: the previous handler's way (requeue, termination) or Stopped
    state.within = None
    return loss_sum.item() / max(steps, 1), earlier


def train(state: TrainState, data, on_epoch: Callable[[dict], None], progress=None, signals=None,
          on_signal: Callable[[], None] | None = None, autocast=nullcontext) -> dict:
    """Train from ``state`` to ``state.cfg.epochs``; call ``on_epoch(record)`` after each epoch
    (``state`` is then at that epoch's end, ready to be snapshot).

    With ``signals`` (a walign.interrupt.DeferredSignals), a stop signal is noticed after the
    current step: ``state.within`` is set to the position in the epoch, ``on_signal()`` is called
    (to save it), then the signal is obeyed, which ends the process (walign.interrupt).
    ``autocast()`` wraps each step's and evaluation's compute (walign.precision).

    ``data`` is a ``walign.datasets.LoadedData``: ``data.train.batches(rng, batch_size)`` yields (inputs,
    labels), ``data.targets(labels)`` gives the regression targets, and ``data.evaluate(...)``
    returns the epoch's evaluation metrics (classification accuracies, or the Add task's losses).

    With ``state.cfg.compile`` the step and the evaluation's forward go through torch.compile
    (walign/compiled.py); otherwise they run eagerly, the numbers the tests pin.

    Returns {'status': 'complete' | 'diverged', 'epochs_done': n, 'eval_seconds': s} (s: this
    process's seconds of evaluation and alignment scoring; and 'compile_seconds' when compiled). A non-finite training loss ends the run after that epoch's record is written, with
    status 'diverged'.
    """
    device = next(state.rule.net.parameters()).device
    steps_per_epoch = data.train.num_batches(state.cfg.batch_size)
    status = "complete"
    if state.cfg.compile:
        step, net = CompiledStep(state.rule, state.optimizer, device, autocast), CompiledForward(state.rule.net, device)
    else:
        step, net = make_step(state.rule, state.optimizer, autocast), state.rule.net
    if progress is not None:
        progress.update(state.epoch * steps_per_epoch + (state.within["step"] if state.within else 0))
    evaluating = 0.0  # seconds of this process's evaluations (the loss read before it has synchronised)
    for epoch in range(state.epoch + 1, state.cfg.epochs + 1):
        if state.cfg.lr_milestones:
            set_lr(state.optimizer, state.cfg.lr_at(epoch))
        _sync(device)
        start = time.perf_counter()
        train_loss, earlier = _train_epoch(state, data, step, progress, signals, on_signal, start)
        evaluated = time.perf_counter()
        with autocast():
            metrics = data.evaluate(net, state.cfg.batch_size, state.rng, state.test_rng, state.cfg.eval_test)
        metrics.update(state.rule.epoch_metrics(epoch))
        _sync(device)
        evaluating += time.perf_counter() - evaluated
        state.epoch = epoch
        on_epoch({"epoch": epoch, "train_loss": train_loss, **metrics,
                  "seconds": earlier + time.perf_counter() - start})
        if not math.isfinite(train_loss):
            status = "diverged"
            break
    outcome = {"status": status, "epochs_done": state.epoch, "eval_seconds": round(evaluating, 3)}
    if state.cfg.compile:  # this process's compiling (a resumed run compiles again)
        outcome["compile_seconds"] = round(step.compile_seconds + net.compile_seconds, 3)
    return outcome
