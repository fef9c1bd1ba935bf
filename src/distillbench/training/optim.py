"""Optimisers built from a model's config, and early stopping on validation loss."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch
from torch import nn

from distillbench.config import ModelDef


def is_decayed(name: str, param: nn.Parameter) -> bool:
    """Whether weight decay applies to a parameter: to weight matrices and convolution kernels, not
    to biases and normalisation scales and shifts (timm's default, ``param_groups_weight_decay``:
    decaying them only shrinks what the data set, and hurts BatchNorm)."""
    return param.ndim > 1 and not name.endswith("bias")


def build_optimizer(
    named_params: Iterable[tuple[str, nn.Parameter]], spec: ModelDef, fused: bool = False
) -> torch.optim.Optimizer:
    """The optimiser ``spec`` asks for by name (adam, adamw, sgd) with its learning rate, epsilon
    (Keras' 1e-7 by default), weight decay (``is_decayed`` parameters only) and momentum; ``fused``:
    one kernel per step over all weights (CPU too, torch >= 2.4)."""
    named_params, fused = list(named_params), fused or None
    if spec.weight_decay:
        decayed = [p for name, p in named_params if is_decayed(name, p)]
        spared = [p for name, p in named_params if not is_decayed(name, p)]
        params: list = [{"params": decayed}, {"params": spared, "weight_decay": 0.0}]
    else:
        params = [p for _, p in named_params]
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, eps=spec.adam_eps, weight_decay=spec.weight_decay, fused=fused)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, eps=spec.adam_eps, weight_decay=spec.weight_decay, fused=fused)
    return torch.optim.SGD(
        params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov, weight_decay=spec.weight_decay, fused=fused
    )


def build_schedule(
    optimizer: torch.optim.Optimizer, spec: ModelDef, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule ``spec`` asks for, stepped once per training step: None for
    constant; cosine decay to 0 after ``warmup_epochs`` of linear warm-up; or torch's OneCycleLR
    (its rise lasts ``warmup_epochs``, or 30% of the steps; the momentum stays as configured)."""
    total = steps_per_epoch * epochs
    if spec.schedule == "constant":
        return None
    if spec.schedule == "one_cycle":  # warm-up: warmup_epochs if set, else torch's 30%; momentum as configured
        warmup_share = min(0.9, spec.warmup_epochs / epochs) if spec.warmup_epochs else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=spec.lr, total_steps=total, pct_start=warmup_share, cycle_momentum=False
        )
    warmup = round(spec.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:  # the lr of the step about to run, relative to spec.lr
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
