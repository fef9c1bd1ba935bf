"""Layers the model zoo shares."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_BYTE_LEVELS = 256


def dropout_scale(
    shape: torch.Size, p: float, dtype: torch.dtype, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The multiplier dropout applies to a tensor of ``shape``: 0 where dropped, 1/(1-p) elsewhere,
    drawn in logical element order from ``generator`` (torch's global generator if None).

    On the CPU with p a multiple of 1/256 (the paper's 0.25 and 0.5) the mask comes from random
    bytes, eight per 64-bit draw: torch's CPU ``bernoulli_`` makes one serial generator call per
    element (its vectorised MKL path runs on Intel CPUs only) and took a third of the small CNN's
    training step on an AMD CPU. Elsewhere it is a Bernoulli draw, as ``F.dropout`` makes it.
    """
    threshold = p * _BYTE_LEVELS
    if device.type == "cpu" and threshold == int(threshold):
        n = shape.numel()
        words = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1, generator=generator)
        keep = words.view(torch.uint8)[:n].view(shape) >= int(threshold)
    else:
        keep = torch.empty(shape, dtype=dtype, device=device).bernoulli_(1.0 - p, generator=generator)
    return keep.to(dtype).mul_(1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask is ``dropout_scale``'s: random bytes on the CPU, a Bernoulli draw
    elsewhere, in logical element order, so a batched group (``training.grouped``) can draw each
    member's mask from that member's own generator and get exactly what the member draws alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1:
            return F.dropout(x, self.p, self.training, self.inplace)
        scale = dropout_scale(x.shape, self.p, x.dtype, x.device)
        return x.mul_(scale) if self.inplace else x * scale
