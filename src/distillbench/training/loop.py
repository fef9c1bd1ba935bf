"""The training loop: shuffled index-slice batches, an optimiser, early stopping on validation loss.

The same loop trains every model. What it trains on is either raw uint8 images (the model's
whole forward pass) or cached activations of a frozen prefix (only the trainable body runs).

``fit`` trains one module; ``fit_group`` trains several runs of one architecture side by side as one
batched module (``training.grouped``). Both run one setup and one epoch (``_Training``): shuffle,
step through the batches, validate each run, write its history row, and stop each run on its own
once its validation loss stops improving. They differ only in how a step draws and computes its
batch (``_Solo``, ``_Batched``). The objective is told the 1-based epoch being trained, so a loss
with a warm-up (DKD's) needs no step counter of its own.

A feature method's objective is a ``FeatureObjective``: ``fit`` then computes the module's
``forward_features(x)`` (the module is a whole ``Classifier`` trained on images) instead of its
logits, and hands the student's ``Features`` (float32) to it; ``train_ce`` and the training accuracy
come from their logits. Such a run trains eagerly (never compiled) and alone (``fit_group`` refuses
it: ``NotGroupable``). Any other objective takes the logits path, unchanged.

What is measured after each epoch is an ``EpochSplits``: with a validation split, a run keeps its
best validation epoch's weights (``FitResult.selected`` "validation"); without one, it trains every
epoch and keeps the last epoch's (``selected`` "last_epoch") and its history rows have no ``val_*``
keys. A test split, if given, adds ``test_loss`` and ``test_accuracy`` to every row and selects
nothing.
"""

from __future__ import annotations

import abc
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from distillbench.config import TrainConfig
from distillbench.data.augment import Augmentation
from distillbench.errors import UserError
from distillbench.models.classifier import Classifier, Features
from distillbench.training.grouped import GroupedModel, NotGroupable, load_member
from distillbench.training.optim import EarlyStopping
from distillbench.training.randomness import derive_seed, global_rng, stream_generator
from distillbench.training.runtime import Runtime

# (batch indices, input batch, labels, logits, epoch) -> loss; epoch: the 1-based epoch being trained
Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
# (batch indices, input batch, labels, the student's Features, epoch) -> loss: a feature method's
FeatureLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Features, int], torch.Tensor]
# trainable parameters with their names -> optimiser (``optim.build_optimizer`` with a model's config bound)
OptimizerFactory = Callable[[list[tuple[str, nn.Parameter]]], torch.optim.Optimizer]
# (optimiser, steps per epoch, epochs) -> a per-step schedule or None (``optim.build_schedule``, bound)
ScheduleFactory = Callable[[torch.optim.Optimizer, int, int], "torch.optim.lr_scheduler.LRScheduler | None"]
# (inputs, labels) of one split: images or cached activations, and their classes
Pair = tuple[torch.Tensor, torch.Tensor]


def no_schedule(optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int) -> None:
    """A constant learning rate: no schedule to step."""
    return None


def cross_entropy_objective(
    idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, epoch: int
) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def smoothed_cross_entropy(label_smoothing: float) -> Objective:
    """Cross-entropy on the labels smoothed by ``label_smoothing`` (0: ``cross_entropy_objective``);
    the epoch changes nothing."""
    if not label_smoothing:
        return cross_entropy_objective
    return lambda idx, x, y, logits, epoch: F.cross_entropy(logits, y, label_smoothing=label_smoothing)


@dataclass(frozen=True)
class FeatureObjective:
    """An objective on the student's ``Features`` rather than its logits (a feature method's): the
    loop computes ``forward_features`` for it. ``parts``: the method's learned parts of this run
    (``DistillMethod.learned_parts``; None: none), which ``loss`` uses: the loop moves them to the
    device, trains their parameters in the student's optimiser (named ``distill.*``) and puts them in
    train mode with the student. Nothing else is kept between calls; nothing between runs."""

    loss: FeatureLoss
    parts: nn.Module | None = None
    teachers_online: bool = True  # False: the teachers' features were computed once, kept in memory

    def __call__(
        self, idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, features: Features, epoch: int
    ) -> torch.Tensor:
        return self.loss(idx, x, y, features, epoch)


def learned_parts(objective: Objective | FeatureObjective | None) -> nn.Module | None:
    """A feature objective's learned parts; None for any other objective, or one without."""
    return objective.parts if isinstance(objective, FeatureObjective) else None


def _feature_forward(module: nn.Module, name: str) -> Callable[[torch.Tensor], Features]:
    """``module.forward_features``: a feature method's student is a whole ``Classifier`` (trained on
    images, never on cached prefix activations, whose stages would be missing)."""
    if not isinstance(module, Classifier):
        raise TypeError(f"{name}: a feature method trains a whole Classifier on images, not a {type(module).__name__}")
    return module.forward_features


@dataclass(frozen=True)
class FitSettings:
    """How a model trains, resolved once per run: its merged ``TrainConfig`` (epochs, batch size,
    patience, evaluation batch), its optimiser and per-step schedule built from the trainable
    parameters, and the augmentation of its training batches (None: none)."""

    config: TrainConfig
    optimizer: OptimizerFactory
    schedule: ScheduleFactory = no_schedule
    augment: Augmentation | None = None


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


@dataclass(frozen=True)
class EpochSplits:
    """What every run is evaluated on after each epoch. ``val`` selects the weights a run keeps and
    stops it early; None: no validation, so every epoch trains and the last epoch's weights are kept.
    ``test`` (None: not measured) is only recorded (history ``test_loss``, ``test_accuracy``): it
    selects and stops nothing, whatever it shows."""

    val: Pair | None
    test: Pair | None = None


def _epoch_splits(val: Pair | EpochSplits | None) -> EpochSplits:
    """``fit``'s ``val`` argument as ``EpochSplits``: a bare pair is the validation split."""
    return val if isinstance(val, EpochSplits) else EpochSplits(val)


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0  # the epoch whose weights the module holds: the best on validation, or the last
    epochs_trained: int = 0
    train_seconds: float = 0.0
    selected: Literal["validation", "last_epoch"] = "validation"  # how the kept weights were chosen


@dataclass
class _Epoch:
    """One epoch's training, per run: summed objective, summed cross-entropy on the hard labels and
    correct predictions, kept on the device (no host sync per step); the summed learning rate of
    its steps; its training time."""

    number: int
    examples: int
    steps: int
    loss: torch.Tensor  # [runs]
    cross_entropy: torch.Tensor  # [runs]
    correct: torch.Tensor  # [runs]
    lr_sum: float = 0.0
    seconds: float = 0.0

    @classmethod
    def start(cls, number: int, runs: int, examples: int, steps: int, device: torch.device) -> _Epoch:
        sums = [torch.zeros(runs, device=device) for _ in range(2)]
        return cls(number, examples, steps, *sums, torch.zeros(runs, device=device, dtype=torch.long))

    def add(self, loss: torch.Tensor, cross_entropy: torch.Tensor, correct: torch.Tensor) -> None:
        """Add a step's sums: one value per run, or one value for a single run."""
        self.loss += loss
        self.cross_entropy += cross_entropy
        self.correct += correct

    def history_row(
        self, run: int, validation: tuple[float, float] | None, test: tuple[float, float] | None, seconds: float
    ) -> dict[str, float]:
        """Run ``run``'s line of ``history.csv``: ``val_loss``/``val_accuracy`` and ``test_loss``/
        ``test_accuracy`` for the (loss, accuracy) pairs given, none for None; ``lr`` is the mean rate
        of the epoch's steps."""
        row = {
            "epoch": self.number,
            "train_loss": self.loss[run].item() / self.examples,
            "train_ce": self.cross_entropy[run].item() / self.examples,
            "train_accuracy": self.correct[run].item() / self.examples,
        }
        for split, measured in (("val", validation), ("test", test)):
            if measured is not None:
                row[f"{split}_loss"], row[f"{split}_accuracy"] = measured
        return {**row, "lr": self.lr_sum / self.steps, "seconds": seconds}

    def check_finite(self, run: int, val_loss: float | None, label: str) -> None:
        """A training or validation loss (None: no validation) that is not a finite number stops the
        run (``UserError`` naming ``label`` and the epoch): nothing it would go on to compute means
        anything."""
        loss_sum, lr = self.loss[run], self.lr_sum / self.steps
        train_finite = bool(torch.isfinite(loss_sum).item())
        if not (train_finite and (val_loss is None or math.isfinite(val_loss))):
            which, bad = ("training", loss_sum.item()) if not train_finite else ("validation", val_loss)
            raise UserError(
                f"{label} diverged: its {which} loss became {bad} in epoch {self.number} (mean learning rate "
                f"{lr:g}). The learning rate is the likely cause: lower it (zoo.<model>.lr) or add warm-up; for a "
                "student, check its distillation settings too (a very small temperature, very large loss weights). "
                "Finished runs are saved; fix the config and run again to resume."
            )


class _Run:
    """One run's part of the loop: its module (it ends holding the weights of its best validation
    epoch, or without validation its last epoch's; a feature method's learned parts alike), objective,
    early stopping (None: no validation) and result. ``name`` labels the log, ``label`` the errors."""

    def __init__(
        self,
        module: nn.Module,
        objective: Objective | FeatureObjective,
        name: str,
        label: str,
        config: TrainConfig,
        validated: bool,
    ):
        """Stops early on validation loss after ``config.patience`` stale epochs, or, not ``validated``
        (no validation split), trains every epoch."""
        self.module, self.objective, self.name, self.label = module, objective, name, label
        parts = learned_parts(objective)
        # What early stopping keeps and restores: the module, with the objective's learned parts.
        self.kept = module if parts is None else nn.ModuleList([module, parts])
        self.stopping = EarlyStopping(self.kept, config.patience) if validated else None
        self.result = FitResult(selected="validation" if validated else "last_epoch")

    def record(self, row: dict[str, float], epochs: int) -> bool:
        """Keep and log an epoch's row; True if the run stops here."""
        self.result.history.append(row)
        improved = self.stopping is not None and self.stopping.update(row["epoch"], row["val_loss"], self.kept)
        eta = row["seconds"] * (epochs - row["epoch"])
        measured = "".join(
            f"  {split}_loss {row[f'{split}_loss']:.4f}  {split}_acc {row[f'{split}_accuracy']:.4f}"
            for split in ("val", "test")
            if f"{split}_loss" in row
        )
        print(
            f"[{self.name}] epoch {row['epoch']:>2}/{epochs}  loss {row['train_loss']:.4f}  "
            f"acc {row['train_accuracy']:.4f}{measured}  "
            f"{row['seconds']:6.1f}s{'  *best' if improved else ''}  (eta <= {eta:.0f}s)",
            flush=True,
        )
        if self.stopping is not None and self.stopping.should_stop:
            print(f"[{self.name}] early stop: val_loss has not improved for {self.stopping.stale} epochs", flush=True)
            return True
        return False

    def finish(self, started: float) -> FitResult:
        """Restore the best epoch's weights (without validation the module holds the last epoch's:
        kept) and complete the result (``started``: when training began)."""
        epochs = len(self.result.history)
        if self.stopping is not None:
            self.stopping.restore(self.kept)
        self.result.best_epoch = self.stopping.best_epoch if self.stopping is not None else epochs
        self.result.epochs_trained, self.result.train_seconds = epochs, time.perf_counter() - started
        if self.stopping is None:
            print(f"[{self.name}] no validation split: keeping the last epoch's weights (epoch {epochs})", flush=True)
        return self.result


class _Training(abc.ABC):
    """The setup and the epoch ``fit`` and ``fit_group`` share: the training split on the device, the
    optimiser over ``module``'s trainable parameters with its schedule and (fp16) loss scaler, and
    the epoch loop with validation and early stopping per run. A subclass says how an epoch's batch
    order is drawn (``shuffle``), how one step computes its runs' losses (``step``, which calls
    ``optimise``) and where a run's current weights are for validation (``current``)."""

    name: str  # the progress bar's

    def __init__(
        self,
        module: nn.Module,
        runs: list[_Run],
        train: tuple[torch.Tensor, torch.Tensor],
        settings: FitSettings,
        runtime: Runtime,
    ):
        device = runtime.device
        self.module, self.runs, self.settings, self.runtime = module, runs, settings, runtime
        self.x, self.y = train[0].to(device), train[1].to(device)
        self.parts = [parts for parts in (learned_parts(r.objective) for r in runs) if parts is not None]
        trained = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        for parts in self.parts:  # a feature method's learned parts train with the student, at its settings
            parts.to(device)
            trained += [(f"distill.{name}", p) for name, p in parts.named_parameters() if p.requires_grad]
        self.optimizer = settings.optimizer(trained)
        self.scaler = torch.amp.GradScaler(device.type, enabled=runtime.precision == "fp16")
        self.examples, batch_size = len(self.y), settings.config.batch_size
        self.steps = (self.examples + batch_size - 1) // batch_size
        self.scheduler = settings.schedule(self.optimizer, self.steps, settings.config.epochs)

    @abc.abstractmethod
    def shuffle(self) -> torch.Tensor:
        """This epoch's batch order on the device: ``[examples]``, or ``[runs, examples]``."""

    @abc.abstractmethod
    def step(self, idx: torch.Tensor, epoch: _Epoch) -> None:
        """One training step on the batch at ``idx`` (indices into the split, per run if 2-D)."""

    def current(self, run: int) -> nn.Module:
        """Run ``run``'s module holding its current weights."""
        return self.runs[run].module

    def optimise(self, loss: torch.Tensor, epoch: _Epoch) -> None:
        """One optimiser step on ``loss`` (fp16: scaled, skipped on overflow), then the schedule's."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        epoch.lr_sum += self.optimizer.param_groups[0]["lr"]  # the rate this step uses
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()

    def train(self, splits: EpochSplits, on_done: Callable[[int, FitResult], None]) -> list[FitResult]:
        """Train every epoch, or until every run stopped early; each run is restored to its best
        weights (without validation: keeps its last) and handed to ``on_done`` as soon as it stops."""
        config = self.settings.config
        started = time.perf_counter()
        active = list(range(len(self.runs)))
        if splits.val is None:
            print(f"[{self.name}] no validation split: trains all {config.epochs} epochs, keeps the last", flush=True)
        for number in range(1, config.epochs + 1):
            epoch = self._train_epoch(number)
            for index in list(active):
                if self.runs[index].record(self._measure(index, epoch, splits), config.epochs):
                    active.remove(index)
                    on_done(index, self._finish(index, started))
            if not active:
                break
        for index in active:
            on_done(index, self._finish(index, started))
        return [run.result for run in self.runs]

    def _measure(self, index: int, epoch: _Epoch, splits: EpochSplits) -> dict[str, float]:
        """Run ``index``'s history row of ``epoch``: its current weights on validation and test, as
        given. ``seconds`` counts training and validation, not the test split's evaluation, which
        the training procedure does not need (the same epoch time with test_every_epoch or without)."""
        module, run, batch = self.current(index), self.runs[index], self.settings.config.eval_batch_size
        started = time.perf_counter()
        validation = evaluate(module, *splits.val, self.runtime, batch) if splits.val is not None else None
        epoch.check_finite(index, validation[0] if validation is not None else None, run.label)
        seconds = epoch.seconds + time.perf_counter() - started
        test = evaluate(module, *splits.test, self.runtime, batch) if splits.test is not None else None
        return epoch.history_row(index, validation, test, seconds)

    def _finish(self, index: int, started: float) -> FitResult:
        self.current(index)  # a batched member's module holds its weights only once loaded from the group
        return self.runs[index].finish(started)

    def _train_epoch(self, number: int) -> _Epoch:
        started = time.perf_counter()
        self.module.train()
        for parts in self.parts:
            parts.train()
        order = self.shuffle()
        epoch = _Epoch.start(number, len(self.runs), self.examples, self.steps, self.runtime.device)
        batch_size = self.settings.config.batch_size
        desc = f"{self.name} epoch {number}"
        bar = tqdm(range(self.steps), desc=desc, unit="batch", leave=False, disable=None, file=sys.stderr)
        for step in bar:
            self.step(order[..., step * batch_size : (step + 1) * batch_size], epoch)
        bar.close()
        epoch.seconds = time.perf_counter() - started
        return epoch


class _Solo(_Training):
    """One module: batch order and augmentation from the run's ``order`` stream; dropout from torch's
    global RNG, which ``fit`` seeds with the run's ``dropout`` stream."""

    def __init__(
        self, run: _Run, seed: int, train: tuple[torch.Tensor, torch.Tensor], settings: FitSettings, runtime: Runtime
    ):
        super().__init__(run.module, [run], train, settings, runtime)
        self.name = run.name
        self.generator = stream_generator(seed, "order")
        self.step_module = torch.compile(run.module) if runtime.compile else run.module
        self.compile_failed = (torch._dynamo.exc.BackendCompilerFailed,) if runtime.compile else ()
        features = isinstance(run.objective, FeatureObjective)
        self.forward_features = _feature_forward(run.module, run.name) if features else None

    def shuffle(self) -> torch.Tensor:
        return torch.randperm(self.examples, generator=self.generator).to(self.runtime.device)

    def step(self, idx: torch.Tensor, epoch: _Epoch) -> None:
        x, y = self.x[idx], self.y[idx]
        if self.settings.augment is not None:
            x = self.settings.augment(x, self.generator)
        x = self.runtime.to_device(x)
        try:
            if self.forward_features is not None:
                logits, loss = self._feature_loss(idx, x, y, epoch.number)
            else:
                with self.runtime.autocast():
                    logits = self.step_module(x)
                logits = logits.float()
                loss = self.runs[0].objective(idx, x, y, logits, epoch.number)
            self.optimise(loss, epoch)
        except self.compile_failed as exc:
            raise UserError(
                f"perf.compile: torch.compile could not compile {self.name} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}); it needs a working C++ compiler on CPU and Triton on "
                "CUDA. Set perf.compile=false to train without it."
            ) from None
        logits = logits.detach()
        epoch.add(loss.detach() * len(idx), F.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) == y).sum())

    def _feature_loss(
        self, idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the student's float32 logits, its feature objective's loss) on the batch ``x``."""
        with self.runtime.autocast():
            features = self.forward_features(x)
        features = features.map(torch.Tensor.float)  # as the logits path casts its logits
        return features.logits, self.runs[0].objective(idx, x, y, features, epoch)


def fit(
    module: nn.Module,
    train: Pair,
    val: Pair | EpochSplits | None,
    settings: FitSettings,
    *,
    seed: int,
    runtime: Runtime | None = None,
    objective: Objective | FeatureObjective = cross_entropy_objective,
    name: str = "model",
) -> FitResult:
    """Train ``module`` in place as ``settings`` say and leave it holding the weights of its best
    validation epoch. ``val``: the validation split, or ``EpochSplits`` (validation, or None for
    none: the last epoch's weights are kept; and a test split measured every epoch).

    Batch order and the augmentation (each training batch, never validation) draw from the run's
    ``order`` stream, dropout from its ``dropout`` stream (``training.randomness``): the same ``seed``
    gives the same run whatever ran before. ``runtime`` (default: fp32 on the CPU) says where and how;
    ``runtime.compile`` runs training steps through ``torch.compile``;
    evaluation stays eager (it shares the weights). fp16 scales the loss (``GradScaler``) so small
    gradients do not underflow; bf16 has fp32's range and needs no scaling.

    ``history`` rows hold ``train_loss`` (the objective) and ``train_ce`` (cross-entropy on the hard
    labels, what ``val_loss`` measures): for plain training the two are equal.

    A ``FeatureObjective`` gets the ``Features`` of ``module`` (a ``Classifier``) instead of logits,
    computed eagerly whatever ``runtime.compile`` says.
    """
    runtime = runtime or Runtime()
    with global_rng(derive_seed(seed, "dropout"), runtime.device):  # dropout draws from torch's global RNG
        splits = _epoch_splits(val)
        run = _Run(module, objective, name, f"{name} seed {seed}", settings.config, splits.val is not None)
        return _Solo(run, seed, train, settings, runtime).train(splits, lambda index, result: None)[0]


@dataclass
class GroupMember:
    """One run of a group: its own module (initial weights in; its kept weights out), seed
    (batch order, augmentation and dropout streams), objective and name for the log."""

    module: nn.Module
    seed: int
    objective: Objective | FeatureObjective  # a FeatureObjective makes the group NotGroupable
    name: str


class _Batched(_Training):
    """Members as one ``GroupedModel``: each member's batch order and augmentation from its own
    ``order`` stream, its dropout from its own ``dropout`` stream; one optimiser step on the sum of
    the members' losses gives each member's weights its own gradient."""

    def __init__(
        self, members: list[GroupMember], train: Pair, settings: FitSettings, runtime: Runtime, validated: bool
    ):
        if runtime.precision == "fp16":  # one GradScaler would skip every member's step when one overflows
            raise NotGroupable("fp16 training: each run needs its own loss scaler")
        if any(isinstance(m.objective, FeatureObjective) for m in members):  # a GroupedModel has no stages
            raise NotGroupable("a feature method's run trains alone")
        device = runtime.device
        self.orders = [stream_generator(member.seed, "order") for member in members]
        dropouts = [stream_generator(member.seed, "dropout", device) for member in members]
        group = GroupedModel([m.module for m in members], dropouts, channels_last=runtime.channels_last)
        group = group.to(device, memory_format=torch.channels_last if runtime.channels_last else torch.preserve_format)
        config = settings.config
        runs = [_Run(m.module, m.objective, m.name, m.name, config, validated) for m in members]
        super().__init__(group, runs, train, settings, runtime)  # one lr for all: the members share a setting
        self.group, self.name = group, f"group of {len(members)}"

    def shuffle(self) -> torch.Tensor:
        return torch.stack([torch.randperm(self.examples, generator=g) for g in self.orders]).to(self.runtime.device)

    def step(self, idx: torch.Tensor, epoch: _Epoch) -> None:  # idx: [members, batch]
        x, y, count = self.x[idx], self.y[idx], len(self.runs)
        if self.settings.augment is not None:
            x = torch.stack([self.settings.augment(x[m], self.orders[m]) for m in range(count)])
        with self.runtime.autocast():
            logits = self.group(x).float()  # [members, batch, classes]
        losses = torch.stack(
            [
                self.runs[m].objective(idx[m], self.runtime.to_device(x[m]), y[m], logits[m], epoch.number)
                for m in range(count)
            ]
        )
        self.optimise(losses.sum(), epoch)
        logits = logits.detach()
        cross_entropy = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y).sum(1)
        epoch.add(losses.detach() * idx.shape[1], cross_entropy, (logits.argmax(2) == y).sum(1))

    def current(self, run: int) -> nn.Module:
        load_member(self.runs[run].module, self.group, run)
        return self.runs[run].module


def fit_group(
    members: list[GroupMember],
    train: Pair,
    val: Pair | EpochSplits | None,
    settings: FitSettings,
    *,
    runtime: Runtime | None = None,
    on_done: Callable[[int, FitResult], None] = lambda index, result: None,
) -> list[FitResult]:
    """Train ``members`` (the same architecture and settings, the same inputs) side by side as one
    ``GroupedModel``; each computes what ``fit`` would give it alone, up to float summation order
    (``val`` as ``fit``'s).
    A member that stops early is restored to its best weights and handed to ``on_done`` at once
    (the group keeps computing it, unused, until all are done). Raises ``NotGroupable`` if the
    members' structure cannot be grouped."""
    runtime = runtime or Runtime()
    with global_rng(None, runtime.device):  # nothing here draws from torch's global RNG; nothing is disturbed
        splits = _epoch_splits(val)
        return _Batched(members, train, settings, runtime, splits.val is not None).train(splits, on_done)
