"""The study's typed configuration: YAML presets, ``--set`` overrides, and clear errors.

The schema's defaults *are* the seed paper's protocol; ``configs/paper.yaml`` spells them out
(a test keeps the two identical).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distillbench.errors import UserError

PAPER_MODELS = ["small_cnn", "resnet50", "vgg16", "kd_resnet50", "kd_ensemble"]


# Upper bounds keep every number in a range where training computes something meaningful and a
# typo (lr=1e300, bootstrap_resamples=1e11) is an error at once, not a NaN or a hang hours later.
MAX_COUNT = 1_000_000  # batch sizes, resamples, images per split limits are far below what memory allows
MAX_EPOCHS = 100_000
MAX_SEEDS = 1_000
MAX_SWEEP_POINTS = 10_000
MAX_SEED_VALUE = 2**32 - 1  # numpy's RandomState (the split) takes seeds below 2**32

# A model key and a study's name become directory and file names: a safe identifier, never a path.
MODEL_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")

# Shared by the kd: section and every distillation method's parameters (training.distill).
Temperature = Annotated[float, Field(ge=0.01, le=1000, description="Softmax temperature of the soft targets.")]
LossWeight = Annotated[float, Field(ge=0, le=1000, description="A term's weight in the loss.")]


def check_name(name: str, where: str, pattern: re.Pattern[str] = MODEL_KEY) -> str:
    """``name`` if it is a safe identifier (it becomes a file name), else ``ValueError`` naming ``where``."""
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise ValueError(
            f"{where}: {name!r} is not a valid name; use letters, digits, _ and - "
            f"({'and . ' if pattern is STUDY_NAME else ''}not first), at most 64 characters: it becomes a "
            "directory name"
        )
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Strict):
    dataset: str = Field(
        "cifar10",
        description="A registered dataset: cifar10, cifar100, svhn, imagefolder, hf:<name or saved path>, or a "
        "plugin's (distillbench.data.DATASETS).",
    )
    dir: Path | None = Field(
        None,
        description="The dataset on disk (cifar10: an extracted cifar-10-batches-py directory; imagefolder: a "
        "directory of train/ and test/ (or val/) folders, one subfolder of images per class); null downloads it.",
    )
    download_root: Path = Field(
        Path("~/.cache/distillbench/data"),
        description="Where a dataset is downloaded, and where imagefolder and hf: keep their decoded images "
        "(decoded/, one checksummed file per dataset and image size; delete it to reclaim the space).",
    )
    val_size: int = Field(
        5000,
        ge=0,
        le=100 * MAX_COUNT,
        description="Seeded, stratified hold-out of the training set; 0: train on every training image, as the "
        "CIFAR KD benchmark does (no validation, so no early stopping: the last epoch is kept; needs "
        "train.patience: null).",
    )
    train_limit: int | None = Field(
        None, ge=20, le=100 * MAX_COUNT, description="Use a seeded, stratified subset of this many training images."
    )
    test_limit: int | None = Field(None, ge=10, le=100 * MAX_COUNT, description="Use the first N test images.")
    image_size: int | None = Field(
        None,
        ge=8,
        le=1024,
        description="imagefolder and hf: decode every image to RGB, this many pixels per side (the shorter side "
        "resized to it, then the centre cropped, as torchvision's Resize + CenterCrop); required when the images "
        "differ in size; null: the images' own size.",
    )
    image_column: str = Field("image", description="hf: the column holding the images (e.g. img for cifar10).")
    label_column: str = Field(
        "label",
        description="hf: the column holding the class labels (a ClassLabel gives the class names; else its sorted "
        "distinct values are the classes).",
    )
    train_split: str = Field(
        "train", description="hf: the split to train on (and carve data.val_size from); imagefolder: its folder."
    )
    test_split: str = Field(
        "test", description="hf: the split to test on (e.g. validation); imagefolder: its folder (test/, else val/)."
    )
    svhn_extra: bool = Field(False, description="svhn: add the 531,131 'extra' training images to train_32x32.")
    split_seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED_VALUE,
        description="Seeds the validation hold-out (and train_limit); the same split for every training seed.",
    )


class TrainConfig(_Strict):
    epochs: int = Field(20, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(64, ge=1, le=MAX_COUNT)
    patience: int | None = Field(
        3, ge=1, le=MAX_EPOCHS, description="Early stopping on validation loss; null trains every epoch."
    )
    eval_batch_size: int = Field(1024, ge=1, le=MAX_COUNT)
    augment: str = Field(
        "none",
        description="Training-time augmentation: none (the paper) or crop_flip (random 4-pixel shift and "
        "horizontal flip); with one, frozen layers and teachers run on every batch instead of from cache.",
    )
    test_every_epoch: bool = Field(
        False,
        description="Also measure test accuracy after every epoch (history: test_accuracy), for the literature's "
        "best-epoch-on-test number (an optimistic selection, reported as such); the kept weights do not change.",
    )


class KDConfig(_Strict):
    temperature: Temperature = 3.0
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the soft-target term.")
    scale_by_t2: bool = Field(
        False,
        description="Multiply the soft term by T^2 (Hinton et al.), which keeps its gradients' scale across "
        "temperatures; off in the paper preset: the paper's formula and the authors' notebook have no T^2.",
    )


class ModelDef(_Strict):
    """How one model key of the study is built and trained."""

    arch: str = Field(
        description="A registered architecture: small_cnn, resnet50, vgg16, ... (checked by study.resolve)"
    )
    title: str | None = Field(None, description="The model's name in the report; the key if null.")
    lr: float = Field(gt=0, le=10, description="Learning rate (the peak, with a schedule).")
    adam_eps: float = Field(1e-7, gt=0, le=1, description="Adam/AdamW epsilon; Keras' 1e-7 by default.")
    optimizer: str = Field(
        "adam", description="A registered optimizer: adam (the paper), adamw, sgd, ... (checked by study.resolve)."
    )
    weight_decay: float = Field(
        0.0,
        ge=0,
        le=1,
        description="L2 (adam, sgd) or decoupled (adamw) weight decay, on weight matrices and convolution kernels "
        "only: biases and normalisation parameters are not decayed (timm's default).",
    )
    decay_all: bool = Field(
        False,
        description="Weight decay on every parameter, biases and normalisation included (torch's optimisers "
        "as the CIFAR KD benchmark runs them); false: on weight matrices and kernels only.",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only.")
    nesterov: bool = Field(False, description="sgd only: Nesterov momentum.")
    schedule: str = Field(
        "constant",
        description="A registered learning rate schedule, stepped per step: constant (the paper), cosine decay "
        "after a linear warm-up, one_cycle (torch's OneCycleLR, peak lr), multistep (x gamma after each of "
        "milestones), ... (checked by study.resolve).",
    )
    warmup_epochs: float = Field(0.0, ge=0, le=MAX_EPOCHS, description="cosine: epochs of linear warm-up from 0 to lr.")
    milestones: list[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] = Field(
        default_factory=list,
        description="multistep: the epochs after which the rate is multiplied by gamma (the CIFAR KD benchmark: "
        "[150, 180, 210]).",
    )
    gamma: float = Field(0.1, gt=0, le=1, description="multistep: the factor applied at each milestone.")
    timm_model: str | None = Field(
        None, description="arch timm: the timm model name (timm.list_models()), e.g. resnet18 or vit_tiny_patch16_224."
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Of the cross-entropy on the labels.")
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="This model's epochs; null: train.epochs.")
    batch_size: int | None = Field(
        None, ge=1, le=MAX_COUNT, description="This model's batch size; null: train.batch_size."
    )
    augment: str | None = Field(None, description="This model's augmentation (a name); null: train.augment.")
    input_size: int | None = Field(
        None,
        ge=8,
        le=4096,
        description="Resize images (on the device, antialiased bilinear, in the frozen prefix: part of every "
        "cache key) to this many pixels per side; null: the data's size.",
    )
    init: Literal["keras", "torch"] = Field(
        "keras", description="From-scratch layers: Glorot-uniform kernels and zero biases, or torch's."
    )
    trainable_layers: Annotated[int, Field(ge=0)] | Literal["all"] = Field(
        0,
        description="Backbones: how many trailing weight-holding layers train (the rest is frozen), or all: "
        "full fine-tuning, BatchNorm included.",
    )
    input_norm: Literal["none", "imagenet", "keras_notebook", "cifar100", "pretrained"] = Field(
        "none",
        description="Pixels in [0, 1] (the paper's text), ImageNet mean/std normalised, keras_notebook: "
        "an emulation of what the authors' notebook fed its backbones (1/255 of the contrast, no mean "
        "subtracted, channels swapped), cifar100: the CIFAR-100 mean/std the KD benchmark's models were trained "
        "with, or pretrained: arch timm, the mean/std of the model's pretrained config.",
    )
    teachers: list[str] = Field(
        default_factory=list, description="Model keys whose averaged logits this student distils."
    )

    @model_validator(mode="after")
    def _check_settings(self) -> ModelDef:
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0")
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones: {self.milestones} must increase strictly, e.g. [150, 180, 210]")
        if self.arch == "timm" and not self.timm_model:
            raise ValueError("timm_model: arch timm needs the timm model's name, e.g. timm_model: resnet18")
        if self.timm_model is not None and self.arch != "timm":
            raise ValueError(f"timm_model: set for arch {self.arch}; it applies to arch timm only")
        return self

    distill: str | dict[str, Any] = Field(
        "kd",
        description="Distillation method, when teachers are given: a name (kd takes the kd: section) or "
        "{method: NAME, PARAM: VALUE, ...}; methods, aggregations and their parameters are in the README.",
    )


def _paper_zoo() -> dict[str, ModelDef]:
    return {
        "small_cnn": ModelDef(arch="small_cnn", title="Small CNN", lr=1e-3),
        "resnet50": ModelDef(arch="resnet50", title="Fine-tuned ResNet50", lr=1e-4, trainable_layers=0),
        "vgg16": ModelDef(arch="vgg16", title="Fine-tuned VGG16", lr=1e-4, trainable_layers=0),
        "kd_resnet50": ModelDef(arch="small_cnn", title="KD from ResNet50", lr=1e-3, teachers=["resnet50"]),
        "kd_ensemble": ModelDef(
            arch="small_cnn", title="KD from ResNet50 + VGG16", lr=1e-3, teachers=["resnet50", "vgg16"]
        ),
    }


class PublishedRow(_Strict):
    """A number a paper published for one model of the study, for the report's "Published vs
    reproduced" section."""

    model: str = Field(description="The model key this number is reproduced by.")
    value: float = Field(ge=0, le=100, description="Top-1 test accuracy in percent, as published.")
    source: str = Field(description="Paper, table and repository the number comes from.")
    selection: Literal["best_epoch", "last_epoch", "unknown"] = Field(
        description="How the source chose the epoch: best test accuracy over epochs (mdistiller), the last "
        "epoch (RepDistiller), or unknown."
    )
    runs: str | None = Field(None, description="What the number summarises, e.g. 'mean of 5 runs', if stated.")


class ComparisonDef(_Strict):
    """A conclusion of the seed paper, worded as its positive statement "a is more accurate than b"
    and tested as a paired comparison of the two models' test accuracy."""

    a: str = Field(description="Model key: the one the claim says is more accurate; differences are a minus b.")
    b: str = Field(description="Model key: the one the claim says is less accurate.")
    claim: str = Field(description="The claim in words, for the report: a is more accurate than b.")


def _paper_comparisons() -> list[ComparisonDef]:
    return [
        ComparisonDef(
            a="small_cnn",
            b="kd_resnet50",
            claim="The small CNN trained from scratch is more accurate than KD from ResNet50 (70.57% vs 68.79%)",
        ),
        ComparisonDef(
            a="small_cnn",
            b="kd_ensemble",
            claim="The small CNN trained from scratch is more accurate than KD from the ensemble (70.57% vs 66.13%)",
        ),
        ComparisonDef(
            a="kd_resnet50",
            b="kd_ensemble",
            claim="KD from ResNet50 alone is more accurate than KD from the ResNet50 + VGG16 ensemble (68.79% vs 66.13%)",
        ),
        ComparisonDef(
            a="vgg16",
            b="resnet50",
            claim="Fine-tuned VGG16 is more accurate than fine-tuned ResNet50 at 32x32 (61.24% vs 42.81%)",
        ),
    ]


class EvaluationConfig(_Strict):
    """What is measured beyond accuracy: calibration, significance, cost."""

    ece_bins: int = Field(
        15, ge=2, le=1000, description="Equal-width confidence bins of the expected calibration error."
    )
    bootstrap_resamples: int = Field(
        10_000, ge=100, le=MAX_COUNT, description="Paired bootstrap resamples of the test set."
    )
    efficiency: bool = Field(True, description="Measure MACs, CPU latency (batch 1) and throughput (batch 256).")
    figures: bool = Field(
        True,
        description="Draw the report's figures (about half a second each, four per model); false: tables only, "
        "for a quick look or many small studies.",
    )
    latency_repeats: int = Field(
        30,
        ge=1,
        le=10_000,
        description="Timed batch-1 forward passes per distinct model, interleaved across models (a tenth as many "
        "at batch 256); median and 10th-90th percentiles reported.",
    )
    scratch: str = Field(
        "small_cnn",
        description="The model trained without a teacher: the baseline of the report's 'Which distillation works "
        "here' section (shown when students use more than one method); auto: per student, the model of its "
        "architecture trained without a teacher (studies of several teacher -> student pairs).",
    )
    kd_reference: str = Field(
        "kd_resnet50",
        description="The student whose method (plain kd) the other methods are compared against; auto: per "
        "student, the plain-KD student of the same architecture and teachers.",
    )
    equivalence_margin: float = Field(
        0.5,
        gt=0,
        le=100,
        description="Published vs reproduced: the margin (accuracy points) of the two one-sided tests; within "
        "it, a number is reproduced.",
    )
    resolvable_difference: float = Field(
        0.3,
        gt=0,
        le=100,
        description="Published vs reproduced: the difference (points) for which the report says how many seeds "
        "would resolve it at the observed spread.",
    )


class PerfConfig(_Strict):
    """Speed switches. None changes results beyond float tolerance; ``naive`` turns all off."""

    naive: bool = Field(False, description="Recompute everything each step: the reference path.")
    cache_features: bool = Field(True, description="Run frozen backbone layers once per split.")
    cache_teacher_logits: bool = Field(True, description="Compute teacher logits once per split.")
    teacher_feature_memory_mb: int = Field(
        2048,
        ge=0,
        le=1_048_576,
        description="Feature distillation without augmentation: the teacher's features on the training split "
        "are computed once and kept in memory when they take at most this many MiB (with cache_teacher_logits); "
        "else, and with augmentation, on every batch.",
    )
    disk_cache: bool = Field(True, description="Keep feature/logit caches on disk across studies.")
    cache_dir: Path = Path("~/.cache/distillbench/cache")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast precision for training and inference; auto: bf16 where the hardware has it "
        "natively (CUDA, CPUs with AVX512-BF16/AMX), else fp32.",
    )
    channels_last: bool = Field(True, description="Images and convolution weights in channels-last layout.")
    fused_optimizer: bool = Field(True, description="Adam's fused kernel: one pass over the weights per step.")
    compile: bool = Field(
        False,
        description="torch.compile the trained layers (needs a C++ compiler on CPU, Triton on CUDA); off by "
        "default: on the development CPU it was no faster, measured within noise.",
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="torch CPU threads of the study, split evenly between perf.workers: each run trains with "
        "threads // workers, wherever and whenever it trains; null: the CPUs this process may use.",
    )
    batched: bool = Field(
        False,
        description="Train runs of one architecture whose inputs are ready (every seed's small CNNs; every KD "
        "student) as one batched model, each with its own streams, early stopping and files. Off: on the "
        "development CPU it measured slower (BENCHMARKS.md); meant for GPUs, where it is not measured yet.",
    )
    workers: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = Field(
        "auto",
        description="Runs trained at once, each in its own process, teachers before their students; auto: one "
        "per CPU (at most 8) on CPU, one on a GPU. Results do not depend on it beyond float tolerance.",
    )
    cpus_per_run: float = Field(
        1.0,
        gt=0,
        le=1024,
        description="Ray executor: CPUs a run's task asks for (its torch threads: the whole part, >= 1).",
    )
    gpus_per_run: float | None = Field(
        None,
        ge=0,
        le=64,
        description="Ray executor: GPUs a run's task asks for; fractions let small runs share a GPU (0.25: four "
        "at once); null: 1 where the cluster has GPUs and device is not cpu, else 0.",
    )

    def effective(self) -> PerfConfig:
        """The switches actually in force: ``naive`` overrides every optimisation."""
        if not self.naive:
            return self
        return self.model_copy(
            update=dict(
                cache_features=False,
                cache_teacher_logits=False,
                disk_cache=False,
                precision="fp32",
                channels_last=False,
                fused_optimizer=False,
                compile=False,
                batched=False,
            )
        )


# Axes a sweep may not vary: the data (validation scores over different splits do not compare), the
# seeds (the replicates of every point), and what changes where or how fast a run trains, not its result.
FIXED_IN_SWEEPS = (
    "data",
    "seeds",
    "perf",
    "device",
    "name",
    "evaluation",
    "comparisons",
    "published",
    "sweep",
    "tracking",
)


class SweepConfig(_Strict):
    """A grid over config keys for ``distillbench sweep``: every combination of the axes' values is a
    study variant (a point); points are compared on validation accuracy only."""

    axes: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Dotted config key -> the values it takes, e.g. {kd.temperature: [1, 3, 6], kd.alpha: [0.3, 0.7]}.",
    )
    executor: Literal["local", "ray"] = Field(
        "local", description="local: this machine (perf.workers, perf.batched); ray: tasks on a Ray cluster."
    )
    address: str | None = Field(
        None, description="ray: the cluster, auto or HOST:PORT; null starts a Ray instance on this machine."
    )

    @model_validator(mode="after")
    def _check_axes(self) -> SweepConfig:
        for key, values in self.axes.items():
            if key.split(".")[0] in FIXED_IN_SWEEPS:
                raise ValueError(
                    f"axes.{key}: a sweep cannot vary {key.split('.')[0]} (fixed across points: "
                    f"{', '.join(FIXED_IN_SWEEPS)}); vary model, training or distillation keys"
                )
            if not values:
                raise ValueError(f"axes.{key}: no values; give at least one, e.g. [1, 2]")
            if len({repr(v) for v in values}) != len(values):
                raise ValueError(f"axes.{key}: {values} repeats a value")
        points = 1
        for values in self.axes.values():
            points *= len(values)
        if points > MAX_SWEEP_POINTS:
            raise ValueError(f"axes: {points:,} grid points; a sweep has at most {MAX_SWEEP_POINTS:,}")
        return self


class TrackingConfig(_Strict):
    """Experiment tracking of every run (params, per-epoch and final metrics, report figures)."""

    backend: Literal["none", "mlflow"] = Field("none", description="mlflow: needs pip install 'distillbench[mlflow]'.")
    uri: str | None = Field(
        None,
        description="MLflow tracking URI; null: a local store in ./mlruns (sqlite:///mlruns/mlflow.db, artifacts "
        "in ./mlruns/artifacts).",
    )
    experiment: str | None = Field(None, description="MLflow experiment; null: the study's name.")


class StudyConfig(_Strict):
    name: str = "paper"
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2],
        description="Every model is trained once per seed; a KD student of seed s distils its teachers of seed s.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    plugins: list[str] = Field(
        default_factory=list,
        description="Python modules (my_lab.kd) or .py files imported before anything is built: they register "
        "their own architectures, datasets, augmentations, methods, optimizers or schedules (README: Extending).",
    )
    models: list[str] = Field(default_factory=lambda: list(PAPER_MODELS))
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    kd: KDConfig = Field(default_factory=KDConfig)
    weights: dict[str, str] = Field(
        default_factory=lambda: {"resnet50": "imagenet", "vgg16": "imagenet"},
        description="Per backbone architecture: imagenet | none | PATH to a torchvision state_dict; per model "
        "key: PATH to that whole model's checkpoint (a state_dict, or the CIFAR KD benchmark's dict whose 'model' "
        "entry is one), loaded and evaluated, not trained (released teachers); arch timm: imagenet | none | PATH.",
    )
    zoo: dict[str, ModelDef] = Field(default_factory=_paper_zoo)
    comparisons: list[ComparisonDef] = Field(default_factory=_paper_comparisons)
    published: list[PublishedRow] = Field(
        default_factory=list,
        description="Published numbers to compare with (the report's 'Published vs reproduced' section).",
    )
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    perf: PerfConfig = Field(default_factory=PerfConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _check_references(self) -> StudyConfig:
        """What needs no registry; names of architectures, methods and augmentations are checked one
        floor up (``study.resolve``), since config imports nothing of ours."""
        if not self.models:
            raise ValueError("models: the list is empty; name at least one model key")
        if not self.seeds:
            raise ValueError("seeds: the list is empty; give at least one seed, e.g. seeds=[0]")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: {self.seeds} repeats a seed; every seed must differ")
        if len(self.seeds) > MAX_SEEDS:
            raise ValueError(f"seeds: {len(self.seeds):,} seeds; a study has at most {MAX_SEEDS:,}")
        if any(not 0 <= seed <= MAX_SEED_VALUE for seed in self.seeds):
            raise ValueError(f"seeds: {self.seeds} has a seed outside 0..{MAX_SEED_VALUE}")
        check_name(self.name, "name", STUDY_NAME)
        for key in self.zoo:
            check_name(key, f"zoo.{key}")
        for number, comparison in enumerate(self.comparisons):
            for side in ("a", "b"):
                if getattr(comparison, side) not in self.zoo:
                    raise ValueError(
                        f"comparisons.{number}.{side}: unknown model {getattr(comparison, side)!r}; "
                        f"known: {', '.join(self.zoo)}"
                    )
            if comparison.a == comparison.b:
                raise ValueError(f"comparisons.{number}: a and b are both {comparison.a!r}")
        for field in ("scratch", "kd_reference"):
            if getattr(self.evaluation, field) != "auto" and getattr(self.evaluation, field) not in self.zoo:
                raise ValueError(
                    f"evaluation.{field}: unknown model {getattr(self.evaluation, field)!r}; known: {', '.join(self.zoo)}"
                )
        for key in self.models:
            if key not in self.zoo:
                raise ValueError(f"models: unknown model {key!r}; known: {', '.join(self.zoo)}")
        for key, spec in self.zoo.items():
            for teacher in spec.teachers:
                if teacher not in self.zoo:
                    raise ValueError(f"zoo.{key}.teachers: unknown model {teacher!r}")
        for arch, source in self.weights.items():
            if not source:
                raise ValueError(f"weights.{arch}: empty; use imagenet, none or a file path")
        for number, row in enumerate(self.published):
            if row.model not in self.zoo:
                raise ValueError(f"published.{number}.model: unknown model {row.model!r}; known: {', '.join(self.zoo)}")
        if self.train.test_every_epoch and self.sweep.axes:
            raise ValueError(
                "train.test_every_epoch: a sweep reads no test data until it has chosen its point on validation "
                "accuracy; measure test accuracy per epoch in a study, not a sweep"
            )
        if self.data.val_size == 0 and self.sweep.axes:
            raise ValueError(
                "data.val_size: 0 leaves no validation data, and a sweep chooses its point on validation "
                "accuracy; keep a validation split (e.g. data.val_size=5000) for sweeps"
            )
        if self.data.val_size == 0 and self.train.patience is not None:
            raise ValueError(
                "data.val_size: 0 leaves no validation data for early stopping; set train.patience: null "
                "(the last epoch is kept), or keep a validation split"
            )
        training_order(self.zoo, self.models)  # raises on cycles
        return self


def model_train_config(cfg: StudyConfig, key: str) -> TrainConfig:
    """``train:`` as model ``key`` trains: with its own epochs, batch size and augmentation where it
    sets them."""
    spec, train = cfg.zoo[key], cfg.train
    return train.model_copy(
        update={
            "epochs": spec.epochs or train.epochs,
            "batch_size": spec.batch_size or train.batch_size,
            "augment": spec.augment or train.augment,
        }
    )


def training_order(zoo: dict[str, ModelDef], wanted: list[str]) -> list[str]:
    """``wanted`` plus every teacher they need, teachers first, otherwise in the order asked."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(key: str) -> None:
        if key in order:
            return
        if key in visiting:
            raise ValueError(f"zoo.{key}.teachers: a model cannot (indirectly) be its own teacher")
        visiting.add(key)
        for teacher in zoo[key].teachers:
            visit(teacher)
        visiting.discard(key)
        order.append(key)

    for key in wanted:
        visit(key)
    return order


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, where: str | None = None) -> None:
    """Set ``a.b.c`` in ``tree``; a mapping merges into the section it names (as a config file's
    does): ``weights={vgg16: imagenet}`` changes vgg16's weights and keeps the other backbones'.
    ``where`` names the setting in errors (default: ``--set a.b.c``)."""
    parts = dotted.split(".")
    node = tree
    for number, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            parent = ".".join(parts[: number + 1])
            raise UserError(
                f"{where or f'--set {dotted}'}: {parent} holds a value ({child!r}), not a section of keys; set "
                f"{parent} itself (e.g. to a mapping) instead."
            )
        node = child
    if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
        _merge(node[parts[-1]], value)
    else:
        node[parts[-1]] = value


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The field names valid where ``loc`` points, to suggest the intended key for a typo."""
    model: type[BaseModel] = StudyConfig
    parts = [str(p) for p in loc[:-1]]
    while parts:
        part = parts.pop(0)
        if model is StudyConfig and part in ("zoo", "comparisons"):
            if not parts:
                return []
            parts.pop(0)  # the model key, or the list index
            model = ModelDef if part == "zoo" else ComparisonDef
            continue
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def invalid_config(problems: list[str], source: str) -> UserError:
    """The one-paragraph error for ``problems`` (``key: what is wrong`` each) in the config from ``source``."""
    return UserError(
        f"Invalid configuration ({source}): " + "; ".join(problems) + ". "
        "Fix the config file or the --set option; `distillbench run --help` lists the options and "
        "configs/paper.yaml shows every key with its default."
    )


def _problems(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
            hint = f" (did you mean {'.'.join([*map(str, loc[:-1]), close[0]])}?)" if close else ""
            lines.append(f"{where}: unknown key{hint}")
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {message}" if loc else message)
    return lines


def describe_source(path: Path | None, overrides: Sequence[str] = ()) -> str:
    """Where a config came from, for error messages: defaults or a file, then each --set."""
    return str(path if path is not None else "defaults") + "".join(f" + --set {text}" for text in overrides)


YAML_MAX_NODES = 100_000  # after aliases are expanded: a config is a few hundred
YAML_MAX_DEPTH = 64


def _check_yaml_size(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand beyond ``YAML_MAX_NODES`` nodes (a "billion laughs"
    alias bomb is a few lines of text), that nests beyond ``YAML_MAX_DEPTH``, or that refers to itself."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int, path: set[int]) -> int:
        if depth > YAML_MAX_DEPTH:
            raise ValueError(f"it nests more than {YAML_MAX_DEPTH} levels deep")
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in path:
            raise ValueError("an alias refers to the collection that contains it")
        path.add(id(node))
        children = node.value if isinstance(node, yaml.SequenceNode) else []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        total = 1 + sum(size(child, depth + 1, path) for child in children)
        path.discard(id(node))
        if total > YAML_MAX_NODES:
            raise ValueError(f"its aliases expand to more than {YAML_MAX_NODES:,} values")
        sizes[id(node)] = total
        return total

    size(root, 0, set())


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` of ``text``, bounded: ``ValueError`` (with ``yaml.YAMLError`` for bad
    syntax) for a document that nests too deeply or whose aliases expand too far."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_size(node)
        return loader.construct_document(node)
    except RecursionError:
        raise ValueError(f"it nests more than {YAML_MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()


def parse_yaml_value(raw: str, where: str) -> Any:
    """A command-line value as YAML (so ``[a,b]`` is a list and ``5`` a number), or the one-paragraph
    error naming ``where``."""
    try:
        return load_yaml(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError) as exc:
        raise UserError(f"{where}: the value is not valid YAML ({exc}).") from None


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` with the value parsed as YAML, so ``models=[a,b]`` and ``x=5`` are typed."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=5.")
    return key.strip(), parse_yaml_value(raw, f"--set {text!r}")


def with_values(cfg: StudyConfig, values: dict[str, Any], source: str) -> StudyConfig:
    """``cfg`` with each dotted key set to its value (as ``--set`` does), validated; errors name ``source``."""
    raw = cfg.model_dump(mode="json")
    for key, value in values.items():
        _set_dotted(raw, key, value, f"{source}, {key}")
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise invalid_config(_problems(exc), source) from None


def name_from_stem(stem: str) -> str:
    """A study's name from its config file's name (``my-kd.yaml`` -> ``my-kd``): each character a
    name cannot hold becomes ``-``, a name that would start with ``.`` or ``-`` gets ``study`` in
    front, and it is cut to 64 characters."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", stem)
    if not re.match(r"[A-Za-z0-9_]", name):
        name = "study" + name if name else "study"
    return name[:64]


def load_config(path: Path | None = None, overrides: list[str] = ()) -> StudyConfig:
    """Defaults, then the YAML file, then each ``--set`` override; validated once at the end. A file
    that sets no ``name`` names the study after itself (``configs/svhn.yaml``: ``svhn``); without a
    file the name is ``paper``, the default protocol's."""
    raw = StudyConfig().model_dump(mode="json")
    if path is not None:
        path = Path(path)
        try:
            loaded = load_yaml(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(
                f"Config file {path} does not exist. Pass an existing YAML file to --config, e.g. configs/paper.yaml."
            ) from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:
            raise UserError(f"Config file {path} could not be read as YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"Config file {path} must hold a mapping of keys, not {type(loaded).__name__}.")
        if "name" not in loaded:  # a study is named after its file unless the file names it
            raw["name"] = name_from_stem(path.stem)
        _merge(raw, loaded)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(raw, key, value)
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise invalid_config(_problems(exc), describe_source(path, overrides)) from None


def config_to_yaml(cfg: StudyConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
