"""A classifier as a frozen prefix followed by a trainable body.

Every model of the study has this shape. The prefix (input scaling and any frozen backbone
layers) is deterministic, so its output can be computed once per split and cached; the body
(trainable backbone layers and the new head) is what the optimiser sees.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(nn.Module):
    """uint8 pixels -> float in [0, 1], optionally normalised with ImageNet's mean and std."""

    def __init__(self, norm: str = "none"):
        super().__init__()
        self.norm = norm
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if norm == "imagenet" else ((0.0,) * 3, (1.0,) * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
        return (x - self.mean) / self.std if self.norm == "imagenet" else x


class Classifier(nn.Module):
    """``body(prefix(x))`` where nothing in ``prefix`` trains and it always runs in eval mode."""

    def __init__(self, prefix: nn.Sequential, body: nn.Sequential):
        super().__init__()
        self.prefix = prefix
        self.body = body
        for param in prefix.parameters():
            param.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.prefix(x))

    @property
    def prefix_is_trivial(self) -> bool:
        """A prefix with no weights only rescales pixels: caching it would save nothing."""
        return not any(True for _ in self.prefix.parameters())

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        self.prefix.eval()
        # Frozen BatchNorm keeps its running statistics, as in Keras with trainable=False.
        for module in self.body.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in module.parameters(recurse=False)
            ):
                module.eval()
        return self


def keras_init_(module: nn.Module) -> None:
    """Glorot-uniform kernels and zero biases for every conv and dense layer, as Keras does."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
