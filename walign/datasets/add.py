"""The Add task (docs/method.md §3.5, §3.6; paper Appendix E): its sequences, splits, evaluation
and summary, and its entry. The network that learns it is walign/rnn.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..rnn import sequence_loss
from .base import DataSet, register
from .splits import TensorSplit

GENERATORS = ("faithful", "clean")
ADD_SUMMARY_KEYS = ("min_train_loss", "min_train_epoch", "min_test_loss", "min_test_epoch", "final_train_loss",
                    "final_test_loss")


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
    """The Add task as loaded data: 300 training and 100 test sequences of length 100."""
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

    def evaluate(self, net, batch_size, rng, test_rng, eval_test=True) -> dict:
        """Test loss, then training loss, each the mean over batches of one fresh permutation
        drawn from the training stream (the released order, docs/method.md §3.6). Gradients are
        off inside the body (not by a decorator, which mutation testing would skip)."""
        def mean_loss(split):
            losses = [sequence_loss(net(x), y) for x, y in split.batches(rng, batch_size)]
            return torch.stack(losses).mean().item()
        with torch.no_grad():
            test_loss = mean_loss(self.test)
            return {"test_loss": test_loss, "eval_train_loss": mean_loss(self.train)}

    @staticmethod
    def summarize(records: list[dict]) -> dict:
        """Minimum finite losses over epochs (as Table 8 reports them, docs/method.md §4.4) and
        their epochs; a run that later diverged keeps its best-so-far values."""
        out = {}
        for name, key in (("train", "eval_train_loss"), ("test", "test_loss")):
            finite = [(r[key], r["epoch"]) for r in records
                      if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            out[f"min_{name}_loss"], out[f"min_{name}_epoch"] = min(finite) if finite else (None, None)
        last = records[-1] if records else {}
        out.update(final_train_loss=last.get("eval_train_loss"), final_test_loss=last.get("test_loss"))
        return out


@register("add")
class Add(DataSet):
    """The Add task (Table 8): 400 binary sequences of length 100, y = 0.5 + 0.5 x(t-2) -
    0.25 x(t-5); the first 300 train, the last 100 test. Learned by the paper's RNN."""
    family = "rnn"
    config = {"generator": "faithful",   # faithful: the released generator that produced Table 8 | clean: eq. 59
              "data_seed": 99,           # seed of the sequence generator
              "sequences": 400, "length": 100, "train_size": 300,
              "precision": "float64",    # float64 | float32
              "epochs": 500,             # Table 8 was produced with 500 (the paper's text says 200)
              "batch_size": 50,          # the initial state S has one row per batch slot
              "lr": 0.001}
    summary_keys = ADD_SUMMARY_KEYS
    summarize = staticmethod(AddTask.summarize)

    @classmethod
    def load(cls, device, **options):
        return AddTask.load(device, **options)

    @classmethod
    def train_examples(cls, options):
        size = options.get("train_size")
        return size if isinstance(size, int) and not isinstance(size, bool) else None

    @classmethod
    def build_net(cls, data, width, batch_size, arch, activation, parameterization, arch_options=None):
        from ..rnn import AddRNN
        return AddRNN(width, batch_size).to(data.dtype)

    @classmethod
    def flops(cls, spec) -> dict:
        from ..cost import rnn_run_cost
        return rnn_run_cost(spec)
