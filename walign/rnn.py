"""The Add task and its recurrent network (SPEC 2.6, 3.5, 3.6; paper Appendix E and K).

The network is the released code's, not eqs. 60-61 as printed: the readout is scaled by
1/sqrt(n), the input weights are not, the output at step t already sees x_t, and every batch
slot has its own learned initial state (a 50 x n matrix S), so batches are always 50 sequences.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import ConfigError

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


def sequence_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over time of the batch-mean squared error (SPEC 4.1)."""
    return (output - target).pow(2).mean(0).sum()


class AddRNN(nn.Module):
    """ReLU RNN with NTK-scaled recurrence and readout and a learned per-slot initial state."""
    family = "rnn"

    def __init__(self, hidden: int, batch_size: int = 50):
        super().__init__()
        if hidden <= 0:
            raise ValueError(f"width must be a positive integer, got {hidden}")
        self.hidden, self.batch_size = hidden, batch_size
        self.w_in = nn.Parameter(torch.zeros(hidden))
        self.w_hh = nn.Parameter(torch.zeros(hidden, hidden))  # row i -> column j: unit i at t-1 to j at t
        self.b_h = nn.Parameter(torch.zeros(hidden))
        self.w_out = nn.Parameter(torch.zeros(hidden))
        self.b_o = nn.Parameter(torch.zeros(()))
        self.state0 = nn.Parameter(torch.zeros(batch_size, hidden))
        self.scale = 1 / math.sqrt(hidden)

    def step(self, x_t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Next state from the input column x_t (B,) and the previous state s (B, n)."""
        return torch.relu(x_t[:, None] * self.w_in + (s @ self.w_hh) * self.scale + self.b_h)

    def readout(self, s: torch.Tensor) -> torch.Tensor:
        return (s @ self.w_out) * self.scale + self.b_o

    def forward(self, x: torch.Tensor, state0: torch.Tensor | None = None) -> torch.Tensor:
        s = self.state0 if state0 is None else state0
        outputs = []
        for t in range(x.shape[1]):
            s = self.step(x[:, t], s)
            outputs.append(self.readout(s))
        return torch.stack(outputs, 1)


def initialize_rnn(net: AddRNN, seed: int) -> None:
    """w_in, W_hh, w_out ~ N(0, 1) drawn in that order from numpy's legacy RNG; biases and S zero."""
    rng = np.random.RandomState(seed)
    n = net.hidden
    with torch.no_grad():
        net.w_in.copy_(torch.from_numpy(rng.randn(n)))
        net.w_hh.copy_(torch.from_numpy(rng.randn(n, n)))
        net.w_out.copy_(torch.from_numpy(rng.randn(n)))
        for p in (net.b_h, net.b_o, net.state0):
            p.zero_()


class SequenceSplit:
    """Whole sequences (inputs and targets) on one device, batched by a numpy permutation."""

    def __init__(self, x: np.ndarray, y: np.ndarray, device, dtype):
        self.x = torch.as_tensor(x, dtype=dtype, device=device)
        self.y = torch.as_tensor(y, dtype=dtype, device=device)

    def __len__(self) -> int:
        return len(self.x)

    def num_batches(self, batch_size: int) -> int:
        return len(self) // batch_size

    def batches(self, rng: np.random.RandomState, batch_size: int):
        order = torch.from_numpy(rng.permutation(len(self))).to(self.x.device)
        for i in range(len(self) // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            yield self.x[idx], self.y[idx]


@dataclass
class AddTask:
    """The Add task as a training task: 300 training and 100 test sequences of length 100."""
    train: SequenceSplit
    test: SequenceSplit
    family = "rnn"
    name = "add"
    dataset_batch_size = None

    @property
    def dtype(self) -> torch.dtype:
        return self.train.x.dtype

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
        dtype = getattr(torch, precision)
        return cls(SequenceSplit(x[:train_size], y[:train_size], device, dtype),
                   SequenceSplit(x[train_size:], y[train_size:], device, dtype))

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
