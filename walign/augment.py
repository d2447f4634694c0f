"""Random crop and horizontal flip of image batches, on the device the batch is on (the standard
CIFAR recipe: pad 4 pixels with zeros, crop back to the original size at a random offset, flip
half the images). Off by default (``augment=false``): the paper trains without augmentation.

Done on the batch already on the device, with no CPU data loader in the step's path and no
host-device synchronisation: the offsets and flips are drawn from a torch generator on that
device, seeded from the run's seed, and its state is part of the checkpoint so that a resumed run
draws what an uninterrupted one would.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4
SEED_OFFSET = 104729  # the augmentation stream is seeded with seed + this, apart from every other stream


class Augment:
    """``augment(x)``: each image of the (B, C, H, W) batch cropped at a random offset of its
    zero-padded copy and flipped left-right with probability 1/2."""

    def __init__(self, seed: int, device: torch.device, pad: int = PAD):
        self.pad = pad
        self.generator = torch.Generator(device=device).manual_seed(seed + SEED_OFFSET)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        padded = F.pad(x, (self.pad, self.pad, self.pad, self.pad))
        offsets = torch.randint(0, 2 * self.pad + 1, (2, b), generator=self.generator, device=x.device)
        flips = torch.rand(b, generator=self.generator, device=x.device) < 0.5
        rows = offsets[0][:, None] + torch.arange(h, device=x.device)                     # (B, H)
        cols = offsets[1][:, None] + torch.arange(w, device=x.device)                     # (B, W)
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        batch = torch.arange(b, device=x.device)[:, None, None]
        cropped = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
        return cropped.permute(0, 3, 1, 2).contiguous()

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def load(self, state) -> None:
        if not isinstance(state, torch.Tensor):
            raise ValueError("the state holds no augmentation random stream")
        self.generator.set_state(state)
