"""The Add task as a training task (SPEC 3.5, 3.6; paper Appendix E): its sequences, splits,
evaluation and summary. The network that learns it is walign/rnn.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .data import TensorSplit
from .errors import ConfigError
from .rnn import sequence_loss

GENERATORS = ("faithful", "clean")


def add_task(generator: str = "faithful", seed: int = 99, sequences: int = 400, length: int = 100):
    """Inputs x (sequences, length) in {0, 1} and targets y = 0.5 + 0.5 x(t-2) - 0.25 x(t-5).

    ``faithful`` reproduces the released generator exactly (and so Table 8): delays wrap around
    the sequence, and the zeroing meant for the first time steps instead zeroes the first term
    for whole sequences 0-1 and the second for sequences 0-4. ``clean`` is eq. 59 as written:
    delayed inputs before the start of a sequence are zero.
    """
    if generator not in GENERATORS:
        raise ValueError(f"unknown add-task generator {generator!r}; valid: {', '.join(GENERATORS)}")
    x = np.random.RandomState(seed).binomial(1, 0.5, size=(sequences, length)).astype(np.float64)
    if generator == "faithful":
        rows = np.arange(sequences)[:, None]
        y = 0.5 + 0.5 * np.roll(x, 2, axis=1) * (rows >= 2) - 0.25 * np.roll(x, 5, axis=1) * (rows >= 5)
    else:
        lag2, lag5 = np.zeros_like(x), np.zeros_like(x)
        lag2[:, 2:], lag5[:, 5:] = x[:, :-2], x[:, :-5]
        y = 0.5 + 0.5 * lag2 - 0.25 * lag5
    return x, y



@dataclass
class AddTask:
    """The Add task as a training task: 300 training and 100 test sequences of length 100."""
    train: TensorSplit
    test: TensorSplit
    family = "rnn"
    name = "add"

    @property
    def dtype(self) -> torch.dtype:
        return self.train.inputs.dtype

    @classmethod
    def load(cls, device, generator: str = "faithful", data_seed: int = 99, sequences: int = 400,
             length: int = 100, train_size: int = 300, precision: str = "float64") -> "AddTask":
        """Generate the sequences; the first ``train_size`` train, the rest test."""
        if generator not in GENERATORS:
            raise ConfigError(f"dataset.generator must be one of {', '.join(GENERATORS)}, got {generator!r}")
        if precision not in ("float32", "float64"):
            raise ConfigError(f"dataset.precision must be float32 or float64, got {precision!r}")
        if not 0 < train_size < sequences:
            raise ConfigError(f"dataset.train_size must be in 1..{sequences - 1}, got {train_size}")
        x, y = add_task(generator, data_seed, sequences, length)
        x, y = torch.as_tensor(x, dtype=getattr(torch, precision)), torch.as_tensor(y, dtype=getattr(torch, precision))
        return cls(TensorSplit(x[:train_size], y[:train_size], device), TensorSplit(x[train_size:], y[train_size:], device))

    @staticmethod
    def targets(y: torch.Tensor) -> torch.Tensor:
        return y

    @torch.no_grad()
    def evaluate(self, net, batch_size, rng, test_rng, eval_test=True) -> dict:
        """Test loss, then training loss, each the mean over batches of one fresh permutation
        drawn from the training stream (the released order, SPEC 3.6)."""
        def mean_loss(split):
            losses = [sequence_loss(net(x), y) for x, y in split.batches(rng, batch_size)]
            return torch.stack(losses).mean().item()
        test_loss = mean_loss(self.test)
        return {"test_loss": test_loss, "eval_train_loss": mean_loss(self.train)}

    @staticmethod
    def summarize(records: list[dict]) -> dict:
        """Minimum finite losses over epochs (as Table 8 reports them, SPEC 4.4) and their epochs;
        a run that later diverged keeps its best-so-far values."""
        out = {}
        for name, key in (("train", "eval_train_loss"), ("test", "test_loss")):
            finite = [(r[key], r["epoch"]) for r in records
                      if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            out[f"min_{name}_loss"], out[f"min_{name}_epoch"] = min(finite) if finite else (None, None)
        last = records[-1] if records else {}
        out.update(final_train_loss=last.get("eval_train_loss"), final_test_loss=last.get("test_loss"))
        return out
