"""The training loop: any rule, any task, any optimizer, per-epoch evaluation (SPEC section 4).

The loop knows rules only through ``Rule.pseudo_gradients``. Batch order follows the released
code: a numpy RNG seeded with the run seed right before training, one permutation of the training
set per epoch, then one permutation of the validation set from the same stream (so evaluation
order is part of the training-order stream, as in the paper's runs). The extra official-test
evaluation draws from a separate RNG so it cannot shift that stream.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .rules import Rule

OPTIMIZERS = ("sgd", "adam")
TEST_RNG_OFFSET = 7919  # the official-test evaluation RNG is seeded with seed + this


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    batch_size: int
    optimizer: str = "sgd"
    seed: int = 99
    eval_test: bool = True


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """Plain SGD (no momentum, no decay) or Adam with TF1's defaults (Table 10)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(rule: Rule, data, cfg: TrainConfig, on_epoch: Callable[[dict, Callable[[], dict]], None],
          progress=None, resume: dict | None = None, signals=None,
          on_signal: Callable[[Callable[[], dict]], None] | None = None) -> dict:
    """Train for ``cfg.epochs`` epochs; call ``on_epoch(record, snapshot)`` after each one.

    ``snapshot()`` returns the training state at that point (see walign/checkpoint.py); pass
    such a state back as ``resume`` to continue from it with the same results as an
    uninterrupted run. With ``signals`` (a walign.interrupt.DeferredSignals), a stop signal is
    noticed after the current step: ``on_signal(snapshot)`` is called with the state in the middle
    of the epoch (which step, the loss so far, the epoch's batch order), then the signal is
    delivered.

    ``data`` is a task: ``data.train.batches(rng, batch_size)`` yields (inputs, labels),
    ``data.targets(labels)`` gives the regression targets, and ``data.evaluate(net, batch_size,
    rng, test_rng, eval_test)`` returns the epoch's evaluation metrics (classification
    accuracies, or the Add task's losses).

    Returns {'status': 'complete' | 'diverged', 'epochs_done': n}. A non-finite training loss ends
    the run after that epoch's record is written, with status 'diverged'.
    """
    net = rule.net
    device = next(net.parameters()).device
    optimizer = make_optimizer(cfg.optimizer, rule.params, cfg.lr)
    rng = np.random.RandomState(cfg.seed)
    test_rng = np.random.RandomState(cfg.seed + TEST_RNG_OFFSET)
    status, epochs_done, within = "complete", 0, None
    if resume is not None:
        rule.load_state_dict(resume["rule"])
        optimizer.load_state_dict(resume["optimizer"])
        rng.set_state(resume["rng"])
        test_rng.set_state(resume["test_rng"])
        torch.set_rng_state(resume["torch_rng"])
        if resume.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(resume["cuda_rng"])
        epochs_done, within = resume["epoch"], resume.get("within_epoch")
        if progress is not None:
            progress.update(epochs_done * data.train.num_batches(cfg.batch_size) + (within["step"] if within else 0))

    def state(**extra) -> dict:
        return {"epoch": epochs_done, "rule": rule.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": rng.get_state(), "test_rng": test_rng.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None, **extra}

    for epoch in range(epochs_done + 1, cfg.epochs + 1):
        _sync(device)
        start = time.perf_counter()
        loss_sum, steps = torch.zeros((), device=device), 0
        if within is not None:  # resuming in the middle of this epoch: same batch order, skip what was done
            rng.set_state(within["order_rng"])
            loss_sum, steps = within["loss_sum"].to(device), within["step"]
        order_rng = rng.get_state()  # the epoch's batch order is drawn from this state
        for index, (x, labels) in enumerate(data.train.batches(rng, cfg.batch_size)):
            if index < steps:
                continue
            step = rule.pseudo_gradients(x, data.targets(labels))
            for param, grad in zip(rule.params, step.grads):
                param.grad = grad
            optimizer.step()
            loss_sum += step.loss
            steps += 1
            if progress is not None:
                progress.update(1)
            if signals is not None and signals.pending is not None:
                within = {"step": steps, "order_rng": order_rng, "loss_sum": loss_sum.detach().cpu().clone()}
                if on_signal is not None:
                    on_signal(lambda: state(within_epoch=within))
                signals.deliver()  # usually ends the process (requeue, KeyboardInterrupt, termination)
        within = None
        train_loss = loss_sum.item() / max(steps, 1)
        metrics = data.evaluate(net, cfg.batch_size, rng, test_rng, cfg.eval_test)
        metrics.update(rule.epoch_metrics(epoch))
        _sync(device)
        epochs_done = epoch
        on_epoch({"epoch": epoch, "train_loss": train_loss, **metrics, "seconds": time.perf_counter() - start},
                 state)
        if not math.isfinite(train_loss):
            status = "diverged"
            break
    return {"status": status, "epochs_done": epochs_done}
