"""Optimisers and learning-rate schedules found by name (``zoo.<key>.optimizer``, ``.schedule``),
built from a model's config; and early stopping on validation loss.

An optimiser is one function ``(param_groups, spec, fused) -> torch.optim.Optimizer`` reading the
options it takes from ``spec`` (a ``ModelDef``), registered with ``@register_optimizer(name)``;
``build_optimizer`` makes the parameter groups (weight decay on ``is_decayed`` parameters only), the
same for all. A schedule is one function ``(optimizer, spec, steps_per_epoch, epochs) -> LRScheduler
or None`` (None: the rate stays), stepped once per training step, registered with
``@register_schedule(name)``. timm's optimizer factory (``_optim_factory.py``: an entry per
optimiser) is the model. ``study.resolve`` checks the config's names against both registries.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from distillbench.config import ModelDef
from distillbench.registry import Registry

# (parameters or parameter groups, the model's config, fused: True, or None for torch's default)
OptimizerBuilder = Callable[[list, ModelDef, "bool | None"], torch.optim.Optimizer]
# (optimiser, steps per epoch, epochs) -> the schedule stepped once per step, or None for a constant rate
ScheduleBuilder = Callable[[torch.optim.Optimizer, ModelDef, int, int], "torch.optim.lr_scheduler.LRScheduler | None"]
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")
SCHEDULES: Registry[ScheduleBuilder] = Registry("schedule")


def register_optimizer(name: str) -> Callable[[OptimizerBuilder], OptimizerBuilder]:
    """``@register_optimizer(name)`` makes a function the optimiser ``optimizer: name``."""
    return OPTIMIZERS.register(name)


def register_schedule(name: str) -> Callable[[ScheduleBuilder], ScheduleBuilder]:
    """``@register_schedule(name)`` makes a function the schedule ``schedule: name``."""
    return SCHEDULES.register(name)


def is_decayed(name: str, param: nn.Parameter) -> bool:
    """Whether weight decay applies to a parameter: to weight matrices and convolution kernels, not
    to biases and normalisation scales and shifts (timm's default, ``param_groups_weight_decay``:
    decaying them only shrinks what the data set, and hurts BatchNorm)."""
    return param.ndim > 1 and not name.endswith("bias")


def build_optimizer(
    named_params: Iterable[tuple[str, nn.Parameter]], spec: ModelDef, fused: bool = False
) -> torch.optim.Optimizer:
    """The optimiser ``spec`` names, over ``named_params``: with weight decay, two groups (the
    ``is_decayed`` parameters, and the rest without decay), else one (``decay_all``: decay on every
    parameter, as torch's optimisers do by themselves and the CIFAR KD benchmark runs them);
    ``fused``: one kernel per step over all weights (CPU too, torch >= 2.4)."""
    named_params = list(named_params)
    if spec.weight_decay and not spec.decay_all:
        decayed = [p for name, p in named_params if is_decayed(name, p)]
        spared = [p for name, p in named_params if not is_decayed(name, p)]
        params: list = [{"params": decayed}, {"params": spared, "weight_decay": 0.0}]
    else:
        params = [p for _, p in named_params]
    return OPTIMIZERS[spec.optimizer](params, spec, fused or None)


@register_optimizer("adam")
def adam(params: list, spec: ModelDef, fused: bool | None) -> torch.optim.Optimizer:
    """Adam (the paper): lr, epsilon (Keras' 1e-7 by default) and L2 weight decay."""
    return torch.optim.Adam(params, lr=spec.lr, eps=spec.adam_eps, weight_decay=spec.weight_decay, fused=fused)


@register_optimizer("adamw")
def adamw(params: list, spec: ModelDef, fused: bool | None) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay."""
    return torch.optim.AdamW(params, lr=spec.lr, eps=spec.adam_eps, weight_decay=spec.weight_decay, fused=fused)


@register_optimizer("sgd")
def sgd(params: list, spec: ModelDef, fused: bool | None) -> torch.optim.Optimizer:
    """SGD with momentum (Nesterov's if ``spec.nesterov``) and L2 weight decay."""
    return torch.optim.SGD(
        params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov, weight_decay=spec.weight_decay, fused=fused
    )


def build_schedule(
    optimizer: torch.optim.Optimizer, spec: ModelDef, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule ``spec`` names, stepped once per training step (None: constant)."""
    return SCHEDULES[spec.schedule](optimizer, spec, steps_per_epoch, epochs)


@register_schedule("constant")
def constant(optimizer: torch.optim.Optimizer, spec: ModelDef, steps_per_epoch: int, epochs: int) -> None:
    """The rate stays at ``spec.lr`` (the paper): no scheduler."""
    return None


@register_schedule("cosine")
def cosine(
    optimizer: torch.optim.Optimizer, spec: ModelDef, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up from 0 over ``spec.warmup_epochs``, then cosine decay to 0 at the last step."""
    total = steps_per_epoch * epochs
    warmup = round(spec.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:  # the lr of the step about to run, relative to spec.lr
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@register_schedule("one_cycle")
def one_cycle(
    optimizer: torch.optim.Optimizer, spec: ModelDef, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """torch's OneCycleLR peaking at ``spec.lr``: its rise lasts ``warmup_epochs`` if set, else
    torch's 30% of the steps; the momentum stays as configured."""
    warmup_share = min(0.9, spec.warmup_epochs / epochs) if spec.warmup_epochs else 0.3
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=spec.lr, total_steps=steps_per_epoch * epochs, pct_start=warmup_share, cycle_momentum=False
    )


def multistep_problem(spec: ModelDef, epochs: int) -> str | None:
    """What makes ``spec``'s multistep schedule unusable, as a config error's ``problem`` text (no
    milestones); None when there is none. Milestones at or past the last epoch are allowed (they never
    apply: a shortened trial of the benchmark keeps its milestones) and said when the schedule is built."""
    if not spec.milestones:
        return "schedule multistep needs milestones, the epochs after which the rate is multiplied by gamma"
    return None


@register_schedule("multistep")
def multistep(
    optimizer: torch.optim.Optimizer, spec: ModelDef, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """``spec.lr`` times ``spec.gamma`` once per milestone passed: 1-based epoch ``e`` trains at
    ``lr * gamma ** (number of milestones m with e > m)``, constant within the epoch. This is the CIFAR
    KD benchmark's step decay, exactly: RepDistiller's and mdistiller's ``adjust_learning_rate`` set
    ``lr * rate ** np.sum(epoch > np.asarray(decay_epochs))`` before each 1-based epoch, so with
    milestones [150, 180, 210] epochs 1-150 train at lr and epoch 151 at lr * 0.1. ``ValueError``
    without milestones (``study.resolve`` says so at config time)."""
    if problem := multistep_problem(spec, epochs):
        raise ValueError(problem)
    milestones = list(spec.milestones)
    if late := [m for m in milestones if m >= epochs]:
        print(f"note: milestones {late} lie at or past the last of {epochs} epochs: they never apply", flush=True)

    def factor(step: int) -> float:  # the lr of the step about to run, relative to spec.lr
        epoch = step // steps_per_epoch + 1
        return spec.gamma ** sum(epoch > m for m in milestones)

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
