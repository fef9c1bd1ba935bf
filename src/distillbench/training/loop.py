"""The training loop: Adam, shuffled index-slice batches, early stopping on validation loss.

The same loop trains every model. What it trains on is either raw uint8 images (the model's
whole forward pass) or cached activations of a frozen prefix (only the trainable body runs).
"""

from __future__ import annotations

import contextlib
import copy
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
from distillbench.training.randomness import derive_seed, global_rng, stream_generator

# (batch indices, input batch, labels, logits) -> loss
Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_objective(idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 where the hardware computes it natively (CUDA with bf16, a CPU with AVX512-BF16
    or AMX), else fp32; bf16 emulated on an older CPU would be slower than fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: absent in some builds
        native = False
    return "bf16" if native else "fp32"


def to_device(batch: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """A batch on ``device``; image-shaped (4-D) batches in channels-last layout if asked."""
    batch = batch.to(device, non_blocking=True)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last and batch.dim() == 4 else batch


@torch.inference_mode()
def predict(
    module: nn.Module,
    inputs: torch.Tensor,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    desc: str | None = None,
) -> torch.Tensor:
    """``module`` over ``inputs`` in eval mode, batched; float32 on the CPU. ``desc``: show a progress bar."""
    was_training = module.training
    module.eval()
    outputs = []
    starts = range(0, len(inputs), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", leave=False, disable=None if desc else True, file=sys.stderr):
        with autocast(device, precision):
            out = module(to_device(inputs[start : start + batch_size], device, channels_last))
        outputs.append(out.float().to("cpu"))
    module.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)


def evaluate(
    module: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on hard labels."""
    logits = predict(module, inputs, batch_size, device, precision, channels_last)
    return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).float().mean().item()


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
    lr: float,
    adam_eps: float,
    seed: int,
    device: torch.device,
    objective: Objective = cross_entropy_objective,
    precision: str = "fp32",
    channels_last: bool = False,
    fused_optimizer: bool = False,
    augment: Augmentation | None = None,
    compile: bool = False,
    name: str = "model",
) -> FitResult:
    """Train ``module`` in place and leave it holding the weights of its best validation epoch.

    Batch order and ``augment`` (each training batch, never validation) draw from the run's ``order``
    stream, dropout from its ``dropout`` stream (``training.randomness``): the same ``seed`` gives the
    same run whatever ran before. ``compile`` runs training steps through ``torch.compile``;
    evaluation stays eager (it shares the weights). fp16 scales the loss (``GradScaler``) so small
    gradients do not underflow; bf16 has fp32's range and needs no scaling.

    ``history`` rows hold ``train_loss`` (the objective) and ``train_ce`` (cross-entropy on the hard
    labels, what ``val_loss`` measures): for plain training the two are equal.
    """
    generator = stream_generator(seed, "order")
    with global_rng(derive_seed(seed, "dropout"), device):  # dropout draws from torch's global RNG
        x, y = train[0].to(device), train[1].to(device)
        val_x, val_y = val
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=lr, eps=adam_eps, fused=fused_optimizer or None)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        n, batch_size = len(y), cfg.batch_size
        steps = (n + batch_size - 1) // batch_size
        step_module = torch.compile(module) if compile else module
        compile_failed = (torch._dynamo.exc.BackendCompilerFailed,) if compile else ()
        result = FitResult()
        best_loss, best_state, stale = float("inf"), copy.deepcopy(module.state_dict()), 0
        started = time.perf_counter()
        for epoch in range(1, cfg.epochs + 1):
            epoch_start = time.perf_counter()
            module.train()
            order = torch.randperm(n, generator=generator).to(device)
            loss_sum = torch.zeros((), device=device)
            ce_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            bar = tqdm(
                range(steps), desc=f"{name} epoch {epoch}", unit="batch", leave=False, disable=None, file=sys.stderr
            )
            for step in bar:
                idx = order[step * batch_size : (step + 1) * batch_size]
                xb, yb = x[idx], y[idx]
                if augment is not None:
                    xb = augment(xb, generator)
                xb = to_device(xb, device, channels_last)
                try:
                    with autocast(device, precision):
                        logits = step_module(xb)
                    logits = logits.float()
                    loss = objective(idx, xb, yb, logits)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                except compile_failed as exc:
                    raise UserError(
                        f"perf.compile: torch.compile could not compile {name} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0]}); it needs a working C++ compiler on CPU and Triton on "
                        "CUDA. Set perf.compile=false to train without it."
                    ) from None
                scaler.step(optimizer)
                scaler.update()
                logits = logits.detach()
                loss_sum += loss.detach() * len(idx)  # stays on the device: no host sync per step
                ce_sum += F.cross_entropy(logits, yb, reduction="sum")
                correct += (logits.argmax(1) == yb).sum()
            bar.close()
            val_loss, val_acc = evaluate(module, val_x, val_y, cfg.eval_batch_size, device, precision, channels_last)
            seconds = time.perf_counter() - epoch_start
            row = {
                "epoch": epoch,
                "train_loss": loss_sum.item() / n,
                "train_ce": ce_sum.item() / n,
                "train_accuracy": correct.item() / n,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": seconds,
            }
            result.history.append(row)
            improved = val_loss < best_loss
            if improved:
                best_loss, best_state, stale, result.best_epoch = val_loss, copy.deepcopy(module.state_dict()), 0, epoch
            else:
                stale += 1
            eta = seconds * (cfg.epochs - epoch)
            print(
                f"[{name}] epoch {epoch:>2}/{cfg.epochs}  loss {row['train_loss']:.4f}  acc {row['train_accuracy']:.4f}"
                f"  val_loss {val_loss:.4f}  val_acc {val_acc:.4f}  {seconds:6.1f}s"
                f"{'  *best' if improved else ''}  (eta <= {eta:.0f}s)",
                flush=True,
            )
            if cfg.patience is not None and stale >= cfg.patience:
                print(f"[{name}] early stop: val_loss has not improved for {stale} epochs", flush=True)
                break
        module.load_state_dict(best_state)
        result.epochs_trained = len(result.history)
        result.train_seconds = time.perf_counter() - started
        return result
