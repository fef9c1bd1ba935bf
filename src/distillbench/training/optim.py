"""Optimisers built from a model's config, and early stopping on validation loss."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch
from torch import nn

from distillbench.config import ModelDef


def build_optimizer(params: Iterable[nn.Parameter], spec: ModelDef, fused: bool = False) -> torch.optim.Optimizer:
    """The optimiser ``spec`` asks for: Adam with its learning rate and epsilon (Keras' 1e-7 by
    default); ``fused``: one kernel per step over all weights (CPU too, torch >= 2.4)."""
    return torch.optim.Adam(list(params), lr=spec.lr, eps=spec.adam_eps, fused=fused or None)


class EarlyStopping:
    """Tracks validation loss per epoch, keeps a copy of the best weights, and says when ``patience``
    epochs in a row brought no improvement (``patience`` None: never)."""

    def __init__(self, module: nn.Module, patience: int | None):
        self.patience = patience
        self.best_loss = math.inf
        self.best_epoch = 0
        self.stale = 0
        self._best_state = copy.deepcopy(module.state_dict())

    def update(self, epoch: int, val_loss: float, module: nn.Module) -> bool:
        """Record an epoch; True if it is the best so far (its weights are kept)."""
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.stale = val_loss, epoch, 0
            self._best_state = copy.deepcopy(module.state_dict())
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.stale >= self.patience

    def restore(self, module: nn.Module) -> None:
        """Load the best epoch's weights (the initial ones if no epoch improved, e.g. all NaN)."""
        module.load_state_dict(self._best_state)
