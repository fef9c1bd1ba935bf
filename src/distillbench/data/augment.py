"""Training-time augmentations of uint8 image batches, found by name (``train.augment``).

Each is one batched tensor operation on the device that holds the batch, with its randomness drawn
from the training loop's seeded generator, so a run is reproducible. Add one with
``register_augmentation``. Any augmentation other than ``none`` makes cached frozen-layer
activations and teacher logits invalid for training; the study then computes them on the fly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# (uint8 batch [N, C, H, W], generator) -> augmented uint8 batch of the same shape
Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTATIONS: dict[str, Augmentation | None] = {"none": None}


def register_augmentation(name: str, augmentation: Augmentation) -> None:
    AUGMENTATIONS[name] = augmentation


def crop_flip(images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Per image i: the H x W window at offset ``shifts[i]`` (rows, cols) of the image zero-padded by
    ``pad`` on every side, mirrored left-right where ``flips[i]``. Returned channels-last in memory."""
    n, _, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = shifts[:, :1] + torch.arange(height, device=images.device)  # [N, H]
    cols = shifts[:, 1:] + torch.arange(width, device=images.device)  # [N, W]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=images.device)[:, None, None]
    # Advanced indices around a slice put the indexed dims first: [N, H, W, C].
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation: a random translation by up to ``pad`` pixels (zero fill) and
    a horizontal flip with probability 1/2, drawn independently per image."""
    shifts = torch.randint(0, 2 * pad + 1, (len(images), 2), generator=generator).to(images.device)
    flips = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    return crop_flip(images, shifts, flips, pad)


register_augmentation("crop_flip", random_crop_flip)
