"""Training-time augmentations of uint8 image batches, found by name (``train.augment``, or a
model's own ``augment``); ``a+b`` applies ``a`` then ``b``.

Each runs on the device that holds the batch, with its randomness drawn from the training loop's
seeded generator, so a run is reproducible. Add one with ``register_augmentation``. Any
augmentation other than ``none`` makes cached frozen-layer activations and teacher logits invalid
for training; the study then computes them on the fly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from distillbench.registry import Registry

# (uint8 batch [N, C, H, W], generator) -> augmented uint8 batch of the same shape
Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTATIONS: Registry[Augmentation | None] = Registry("augmentation")
AUGMENTATIONS.register("none", None)  # no augmentation: the cached activations stay valid


def register_augmentation(name: str, augmentation: Augmentation) -> None:
    """``augmentation`` is ``train.augment: name`` (or a part of ``a+b``); a name registers once."""
    AUGMENTATIONS.register(name, augmentation)


def unknown_augmentations(name: str) -> list[str]:
    """The parts of ``name`` (``a+b``) that no augmentation is registered as."""
    return [part for part in name.split("+") if part not in AUGMENTATIONS]


def augmentation_problem(name: str, where: str) -> str | None:
    """The config error line for ``name`` (at config key ``where``) if a part of it is unknown."""
    unknown = unknown_augmentations(name)
    return f"{AUGMENTATIONS.unknown(unknown[0], where)}; a+b applies a, then b" if unknown else None


def augmentation_named(name: str) -> Augmentation | None:
    """The augmentation ``name`` names; parts joined by ``+`` are applied left to right."""
    parts = [AUGMENTATIONS[part] for part in name.split("+") if AUGMENTATIONS[part] is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]

    def composed(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for part in parts:
            images = part(images, generator)
        return images

    return composed


def torchvision_policy(transform: Callable[[torch.Tensor], torch.Tensor]) -> Augmentation:
    """A ``torchvision.transforms.v2`` transform applied to each uint8 image of a batch on its own
    (independent draws per image). v2 draws from torch's global RNG: here it is seeded from the
    loop's generator and restored afterwards, so the run stays reproducible."""

    def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        devices = [images.device.index or 0] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return torch.stack([transform(image) for image in images])

    return augment


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


def _register_torchvision_policies() -> None:
    from torchvision.transforms import v2

    # Müller & Hutter, ICCV 2021: one random op of random strength per image.
    register_augmentation("trivial_augment", torchvision_policy(v2.TrivialAugmentWide()))
    # Zhong et al., AAAI 2020 (there p 0.5 and random values): a random rectangle set to 0, p 0.25.
    register_augmentation("random_erasing", torchvision_policy(v2.RandomErasing(p=0.25)))


register_augmentation("crop_flip", random_crop_flip)
_register_torchvision_policies()
