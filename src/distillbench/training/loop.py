"""The training loop: shuffled index-slice batches, an optimiser, early stopping on validation loss.

The same loop trains every model. What it trains on is either raw uint8 images (the model's
whole forward pass) or cached activations of a frozen prefix (only the trainable body runs).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from distillbench.config import TrainConfig
from distillbench.data.augment import Augmentation
from distillbench.errors import UserError
from distillbench.training.grouped import GroupedModel, NotGroupable, load_member
from distillbench.training.optim import EarlyStopping
from distillbench.training.randomness import derive_seed, global_rng, stream_generator
from distillbench.training.runtime import Runtime

# (batch indices, input batch, labels, logits) -> loss
Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# trainable parameters with their names -> optimiser (``optim.build_optimizer`` with a model's config bound)
OptimizerFactory = Callable[[list[tuple[str, nn.Parameter]]], torch.optim.Optimizer]
# (optimiser, steps per epoch, epochs) -> a per-step schedule or None (``optim.build_schedule``, bound)
ScheduleFactory = Callable[[torch.optim.Optimizer, int, int], "torch.optim.lr_scheduler.LRScheduler | None"]


def _no_schedule(optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int) -> None:
    return None


def cross_entropy_objective(idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def smoothed_cross_entropy(label_smoothing: float) -> Objective:
    """Cross-entropy on the labels smoothed by ``label_smoothing`` (0: ``cross_entropy_objective``)."""
    if not label_smoothing:
        return cross_entropy_objective
    return lambda idx, x, y, logits: F.cross_entropy(logits, y, label_smoothing=label_smoothing)


@torch.inference_mode()
def predict(
    module: nn.Module, inputs: torch.Tensor, runtime: Runtime, batch_size: int | None = None, desc: str | None = None
) -> torch.Tensor:
    """``module`` over ``inputs`` in eval mode, in batches (``runtime.inference_batch`` by default);
    float32 on the CPU. ``desc``: show a progress bar."""
    was_training = module.training
    module.eval()
    outputs = []
    batch_size = batch_size or runtime.inference_batch
    starts = range(0, len(inputs), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", leave=False, disable=None if desc else True, file=sys.stderr):
        with runtime.autocast():
            out = module(runtime.to_device(inputs[start : start + batch_size]))
        outputs.append(out.float().to("cpu"))
    module.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)


def evaluate(
    module: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, runtime: Runtime, batch_size: int | None = None
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on hard labels."""
    logits = predict(module, inputs, runtime, batch_size)
    return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).float().mean().item()


def _history_row(
    epoch: int,
    n: int,
    loss_sum: torch.Tensor,
    ce_sum: torch.Tensor,
    correct: torch.Tensor,
    val_loss: float,
    val_acc: float,
    lr: float,
    seconds: float,
    name: str,
) -> dict[str, float]:
    """One epoch's line of ``history.csv``; ``lr`` is the mean rate of the epoch's steps. A loss that
    is not a finite number stops the run (``UserError`` naming it and the epoch): nothing it would go
    on to compute means anything."""
    train_finite = bool(torch.isfinite(loss_sum).item())
    if not (train_finite and math.isfinite(val_loss)):
        which, bad = ("training", loss_sum.item()) if not train_finite else ("validation", val_loss)
        raise UserError(
            f"{name} diverged: its {which} loss became {bad} in epoch {epoch} (mean learning rate {lr:g}). The "
            "learning rate is the likely cause: lower it (zoo.<model>.lr) or add warm-up; for a student, check "
            "its distillation settings too (a very small temperature, very large loss weights). Finished runs "
            "are saved; fix the config and run again to resume."
        )
    return {
        "epoch": epoch,
        "train_loss": loss_sum.item() / n,
        "train_ce": ce_sum.item() / n,
        "train_accuracy": correct.item() / n,
        "val_loss": val_loss,
        "val_accuracy": val_acc,
        "lr": lr,
        "seconds": seconds,
    }


def _say_epoch(name: str, epochs: int, row: dict[str, float], improved: bool) -> None:
    eta = row["seconds"] * (epochs - row["epoch"])
    print(
        f"[{name}] epoch {row['epoch']:>2}/{epochs}  loss {row['train_loss']:.4f}  acc {row['train_accuracy']:.4f}"
        f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}  {row['seconds']:6.1f}s"
        f"{'  *best' if improved else ''}  (eta <= {eta:.0f}s)",
        flush=True,
    )


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    epochs_trained: int = 0
    train_seconds: float = 0.0


def fit(
    module: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    cfg: TrainConfig,
    optimizer: OptimizerFactory,
    seed: int,
    runtime: Runtime | None = None,
    objective: Objective = cross_entropy_objective,
    augment: Augmentation | None = None,
    name: str = "model",
    schedule: ScheduleFactory = _no_schedule,
) -> FitResult:
    """Train ``module`` in place and leave it holding the weights of its best validation epoch.

    ``optimizer`` builds the optimiser from the trainable parameters (``optim.build_optimizer``).
    Batch order and ``augment`` (each training batch, never validation) draw from the run's ``order``
    stream, dropout from its ``dropout`` stream (``training.randomness``): the same ``seed`` gives the
    same run whatever ran before. ``runtime`` (default: fp32 on the CPU) says where and how;
    ``runtime.compile`` runs training steps through ``torch.compile``;
    evaluation stays eager (it shares the weights). fp16 scales the loss (``GradScaler``) so small
    gradients do not underflow; bf16 has fp32's range and needs no scaling.

    ``history`` rows hold ``train_loss`` (the objective) and ``train_ce`` (cross-entropy on the hard
    labels, what ``val_loss`` measures): for plain training the two are equal.
    """
    runtime = runtime or Runtime()
    device = runtime.device
    generator = stream_generator(seed, "order")
    with global_rng(derive_seed(seed, "dropout"), device):  # dropout draws from torch's global RNG
        x, y = train[0].to(device), train[1].to(device)
        val_x, val_y = val
        steps_optimizer = optimizer([(name, p) for name, p in module.named_parameters() if p.requires_grad])
        scaler = torch.amp.GradScaler(device.type, enabled=runtime.precision == "fp16")
        n, batch_size = len(y), cfg.batch_size
        steps = (n + batch_size - 1) // batch_size
        scheduler = schedule(steps_optimizer, steps, cfg.epochs)
        step_module = torch.compile(module) if runtime.compile else module
        compile_failed = (torch._dynamo.exc.BackendCompilerFailed,) if runtime.compile else ()
        result = FitResult()
        stopping = EarlyStopping(module, cfg.patience)
        started = time.perf_counter()
        for epoch in range(1, cfg.epochs + 1):
            epoch_start = time.perf_counter()
            module.train()
            order = torch.randperm(n, generator=generator).to(device)
            loss_sum = torch.zeros((), device=device)
            ce_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            lr_sum = 0.0
            bar = tqdm(
                range(steps), desc=f"{name} epoch {epoch}", unit="batch", leave=False, disable=None, file=sys.stderr
            )
            for step in bar:
                idx = order[step * batch_size : (step + 1) * batch_size]
                xb, yb = x[idx], y[idx]
                if augment is not None:
                    xb = augment(xb, generator)
                xb = runtime.to_device(xb)
                try:
                    with runtime.autocast():
                        logits = step_module(xb)
                    logits = logits.float()
                    loss = objective(idx, xb, yb, logits)
                    steps_optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                except compile_failed as exc:
                    raise UserError(
                        f"perf.compile: torch.compile could not compile {name} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0]}); it needs a working C++ compiler on CPU and Triton on "
                        "CUDA. Set perf.compile=false to train without it."
                    ) from None
                lr_sum += steps_optimizer.param_groups[0]["lr"]  # the rate this step uses
                scaler.step(steps_optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                logits = logits.detach()
                loss_sum += loss.detach() * len(idx)  # stays on the device: no host sync per step
                ce_sum += F.cross_entropy(logits, yb, reduction="sum")
                correct += (logits.argmax(1) == yb).sum()
            bar.close()
            val_loss, val_acc = evaluate(module, val_x, val_y, runtime, cfg.eval_batch_size)
            seconds = time.perf_counter() - epoch_start
            row = _history_row(
                epoch, n, loss_sum, ce_sum, correct, val_loss, val_acc, lr_sum / steps, seconds, f"{name} seed {seed}"
            )
            result.history.append(row)
            improved = stopping.update(epoch, val_loss, module)
            _say_epoch(name, cfg.epochs, row, improved)
            if stopping.should_stop:
                _say_early_stop(name, stopping)
                break
        return _finish(result, stopping, module, started)


def _finish(result: FitResult, stopping: EarlyStopping, module: nn.Module, started: float) -> FitResult:
    """Restore ``module`` to its best epoch's weights and complete ``result``."""
    stopping.restore(module)
    result.best_epoch, result.epochs_trained = stopping.best_epoch, len(result.history)
    result.train_seconds = time.perf_counter() - started
    return result


def _say_early_stop(name: str, stopping: EarlyStopping) -> None:
    print(f"[{name}] early stop: val_loss has not improved for {stopping.stale} epochs", flush=True)


@dataclass
class GroupMember:
    """One run of a group: its own module (initial weights in; its best weights out), seed
    (batch order, augmentation and dropout streams), objective and name for the log."""

    module: nn.Module
    seed: int
    objective: Objective
    name: str


def fit_group(
    members: list[GroupMember],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    cfg: TrainConfig,
    optimizer: OptimizerFactory,
    runtime: Runtime | None = None,
    augment: Augmentation | None = None,
    on_done: Callable[[int, FitResult], None] = lambda index, result: None,
    schedule: ScheduleFactory = _no_schedule,
) -> list[FitResult]:
    """Train ``members`` (the same architecture and optimiser settings, the same inputs) side by
    side as one ``GroupedModel``; each computes what ``fit`` would give it alone, up to float
    summation order. A member that stops early is restored to its best weights and handed to
    ``on_done`` at once (the group keeps computing it, unused, until all are done). Raises
    ``NotGroupable`` if the members' structure cannot be grouped."""
    runtime = runtime or Runtime()
    if runtime.precision == "fp16":  # one GradScaler would skip every member's step when one overflows
        raise NotGroupable("fp16 training: each run needs its own loss scaler")
    device, count = runtime.device, len(members)
    orders = [stream_generator(member.seed, "order") for member in members]
    dropouts = [stream_generator(member.seed, "dropout", device) for member in members]
    group = GroupedModel([m.module for m in members], dropouts, channels_last=runtime.channels_last)
    group = group.to(device, memory_format=torch.channels_last if runtime.channels_last else torch.preserve_format)
    with global_rng(None, device):  # nothing here draws from torch's global RNG; nothing is disturbed
        x, y = train[0].to(device), train[1].to(device)
        val_x, val_y = val
        steps_optimizer = optimizer(list(group.named_parameters()))
        n, batch_size = len(y), cfg.batch_size
        steps = (n + batch_size - 1) // batch_size
        scheduler = schedule(steps_optimizer, steps, cfg.epochs)  # one lr for all: the members share a setting
        stoppings = [EarlyStopping(member.module, cfg.patience) for member in members]
        results = [FitResult() for _ in members]
        active = list(range(count))
        started = time.perf_counter()

        def finish(index: int) -> None:
            on_done(index, _finish(results[index], stoppings[index], members[index].module, started))

        for epoch in range(1, cfg.epochs + 1):
            epoch_start = time.perf_counter()
            group.train()
            order = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(device)
            loss_sum = torch.zeros(count, device=device)
            ce_sum = torch.zeros(count, device=device)
            correct = torch.zeros(count, device=device, dtype=torch.long)
            lr_sum = 0.0
            for step in range(steps):
                idx = order[:, step * batch_size : (step + 1) * batch_size]  # [members, batch]
                xb, yb = x[idx], y[idx]
                if augment is not None:
                    xb = torch.stack([augment(xb[m], orders[m]) for m in range(count)])
                with runtime.autocast():
                    logits = group(xb).float()  # [members, batch, classes]
                losses = torch.stack(
                    [members[m].objective(idx[m], runtime.to_device(xb[m]), yb[m], logits[m]) for m in range(count)]
                )
                steps_optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()  # each member's weights get its own gradient
                lr_sum += steps_optimizer.param_groups[0]["lr"]
                steps_optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                logits = logits.detach()
                loss_sum += losses.detach() * idx.shape[1]
                ce_sum += F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view_as(yb).sum(1)
                correct += (logits.argmax(2) == yb).sum(1)
            training_seconds = time.perf_counter() - epoch_start
            lr = lr_sum / steps
            for m in list(active):
                member = members[m]
                validation_start = time.perf_counter()
                load_member(member.module, group, m)
                val_loss, val_acc = evaluate(member.module, val_x, val_y, runtime, cfg.eval_batch_size)
                seconds = training_seconds + time.perf_counter() - validation_start  # the group's step time
                row = _history_row(
                    epoch, n, loss_sum[m], ce_sum[m], correct[m], val_loss, val_acc, lr, seconds, member.name
                )
                results[m].history.append(row)
                _say_epoch(member.name, cfg.epochs, row, stoppings[m].update(epoch, val_loss, member.module))
                if stoppings[m].should_stop:
                    _say_early_stop(member.name, stoppings[m])
                    active.remove(m)
                    finish(m)
            if not active:
                break
        for m in active:
            finish(m)
    return results
