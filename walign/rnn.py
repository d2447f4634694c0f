"""The Add task's recurrent network (docs/method.md §2.6; paper Appendix E and K). The task's data is in
walign/datasets/add.py.

The network is the released code's, not eqs. 60-61 as printed: the readout is scaled by
1/sqrt(n), the input weights are not, the output at step t already sees x_t, and every batch
slot has its own learned initial state (a 50 x n matrix S), so batches are always 50 sequences.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

def sequence_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over time of the batch-mean squared error (docs/method.md §4.1)."""
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
