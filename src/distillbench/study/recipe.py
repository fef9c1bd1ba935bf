"""A model's recipe: everything about how one model key trains, resolved once from the config.

The config says it in several places (the model's own keys, ``train:`` for what it leaves unset,
``kd:`` for plain KD's parameters, ``weights.<arch>`` for a backbone, ``weights.<model key>`` for a
timm model's weights or a whole model's checkpoint); ``model_recipes`` merges them
into one ``ModelRecipe`` per model key when the study is made. The plan (identities, batched groups),
the run's inputs and objective, the executor, the results and the report read the recipe; none of
them looks a model's settings up in the config again.

This module is also the one place that resolves a student's ``distill`` setting into a
``DistillMethod`` (``distill_problems`` reports the settings that do not resolve, or that its
method cannot train: a feature method distils one teacher, and its student and teacher must be
architectures that declare their stages, as the architecture registry records:
``models.declares_stages``).

Weights: an entry ``weights.<name>`` whose name is a registered backbone is that architecture's
(imagenet | none | PATH, for every model of it); any other name is a model key's, and takes
precedence over its architecture's. For ``arch: timm`` it is the timm network's weights
(imagenet | none | PATH; the model trains). For any other architecture it is the PATH of that whole
model's checkpoint: the model is *loaded*, evaluated and not trained (a released teacher), so its
identity holds only what its predictions depend on (``LOADED_IDENTITY``, and the file's hash in the
plan), never training settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from distillbench.config import ModelDef, StudyConfig, TrainConfig, model_train_config, training_order
from distillbench.data.augment import Augmentation, augmentation_named
from distillbench.models import BACKBONES, declares_stages, staged_architectures
from distillbench.training.distill import DistillMethod, resolve_method
from distillbench.training.loop import FitSettings
from distillbench.training.optim import build_optimizer, build_schedule

# Model settings a fingerprint leaves out: the title names the model; epochs, batch size and augment
# enter resolved (``ModelRecipe.train``); a student's method enters resolved, and a model without
# teachers distils nothing.
NOT_IN_IDENTITY = {"title", "epochs", "batch_size", "augment", "distill"}

# Settings added after fingerprints were first issued: left out while at their default, so a study
# that does not use them keeps the fingerprints (and the finished runs) it had.
OMITTED_AT_DEFAULT = {
    "spec": {"milestones": [], "gamma": 0.1, "timm_model": None, "decay_all": False},
    "train": {"test_every_epoch": False},
    "feature_method": {"kd_weight": 0.0},  # a feature method's KD term (training.distill.feature)
}

# Settings that a batched group of runs must share (one optimiser, one input pipeline): everything
# but what names the model and what it distils.
NOT_IN_GROUP = {"teachers", "title", "distill"}

# What a loaded model's predictions depend on besides its checkpoint (hashed by the plan): its
# architecture and input pipeline. Its training settings do not matter, so changing them (or train:)
# neither re-evaluates it nor retrains its students.
LOADED_IDENTITY = ("arch", "input_size", "input_norm")

# The recipe fields run.json (and the report) show, besides the merged budget and augmentation.
RECORDED_SETTINGS = (
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "nesterov",
    "schedule",
    "warmup_epochs",
    "milestones",
    "gamma",
    "decay_all",
    "label_smoothing",
    "trainable_layers",
    "input_size",
    "input_norm",
)


@dataclass(frozen=True)
class ModelRecipe:
    """How model ``key`` trains: its config entry, the merged training settings, its pretrained
    weights' source (a backbone's, a timm model's, or a whole model's checkpoint: then it is
    ``loaded``, not trained), and as a student its teachers and resolved method."""

    key: str
    spec: ModelDef
    train: TrainConfig  # ``train:`` with the model's own epochs, batch size and augmentation
    weights: str | None  # ``weights.<arch>`` for a pretrained backbone the study trains, else None
    method: DistillMethod | None  # None: trained on the labels alone
    # ``weights.<key>``: arch timm's imagenet | none | PATH, or the PATH of a whole model's checkpoint
    own_weights: str | None = None

    @property
    def loaded(self) -> bool:
        """A whole model's checkpoint (``weights.<key>``, not arch timm): evaluated, not trained."""
        return self.own_weights is not None and self.spec.arch != "timm"

    @property
    def build_weights(self) -> str | None:
        """What the architecture's builder gets as ``weights``: a backbone's or timm model's source;
        ``none`` for a loaded model (every weight then comes from its checkpoint: nothing to download)."""
        if self.loaded:
            return "none"
        return self.own_weights if self.spec.arch == "timm" else self.weights

    @property
    def arch(self) -> str:
        return self.spec.arch

    @property
    def title(self) -> str:
        return self.spec.title or self.key

    @property
    def teachers(self) -> tuple[str, ...]:
        return tuple(self.spec.teachers)

    @property
    def augment(self) -> str:
        return self.train.augment

    @property
    def augmentation(self) -> Augmentation | None:
        return augmentation_named(self.train.augment)

    @property
    def teachers_online(self) -> bool:
        """Whether its teachers run on every batch (an augmented one) rather than from what was computed
        once (cached logits; a feature method's features kept in memory, unless they exceed
        ``perf.teacher_feature_memory_mb``: the run's record then says online, ``study.execute``)."""
        return bool(self.teachers) and self.augment != "none"

    def fit_settings(self, fused_optimizer: bool) -> FitSettings:
        """What the training loop needs of this recipe: the merged settings, the optimiser (``fused``:
        one kernel per step) and schedule it names, and its augmentation."""
        return FitSettings(
            self.train,
            optimizer=lambda params: build_optimizer(params, self.spec, fused_optimizer),
            schedule=lambda optimizer, steps, epochs: build_schedule(optimizer, self.spec, steps, epochs),
            augment=self.augmentation,
        )

    def identity(self) -> dict[str, Any]:
        """The model's part of a run's fingerprint: what it is and how it trains, resolved (a
        teacher that sets its own epochs does not change when ``train:`` does; its title changes
        nothing), and the method with every parameter resolved (kd's from the ``kd:`` section). A
        loaded model's: ``LOADED_IDENTITY`` alone (its checkpoint's hash is the plan's)."""
        if self.loaded:
            spec = self.spec.model_dump(mode="json")
            return {"spec": {name: spec[name] for name in LOADED_IDENTITY}, "loaded": True}
        return {
            "spec": _without_defaults(self.spec.model_dump(mode="json", exclude=NOT_IN_IDENTITY), "spec"),
            "train": _without_defaults(self.train.model_dump(mode="json"), "train"),
            "distill": self._method_identity(),
        }

    def _method_identity(self) -> dict[str, Any] | None:
        if self.method is None:
            return None
        settings = self.method.model_dump(mode="json")
        return _without_defaults(settings, "feature_method") if self.method.needs_features else settings

    def group_key(self) -> str:
        """Equal for recipes whose runs can train as one batched model: the same architecture and
        settings apart from teachers, title and method (so the same inputs and optimiser). A loaded
        model trains with nothing: its key is its own, which no trained run shares."""
        if self.loaded:
            return f"loaded:{self.key}"
        return json.dumps(self.spec.model_dump(mode="json", exclude=NOT_IN_GROUP), sort_keys=True)

    def record(self) -> dict[str, Any]:
        """How this model trained, for run.json and the report: optimiser, schedule, budget, input
        pipeline, and whether its teachers ran online on its augmented batches."""
        return {
            **{name: getattr(self.spec, name) for name in RECORDED_SETTINGS},
            "epochs": self.train.epochs,
            "batch_size": self.train.batch_size,
            "augment": self.augment,
            "teachers_online": self.teachers_online,
            **({"loaded": True} if self.loaded else {}),
        }


Recipes = Mapping[str, ModelRecipe]  # by model key


def _without_defaults(settings: dict[str, Any], part: str) -> dict[str, Any]:
    omitted = OMITTED_AT_DEFAULT[part]
    return {name: value for name, value in settings.items() if name not in omitted or value != omitted[name]}


def _method(cfg: StudyConfig, key: str) -> DistillMethod:
    """``zoo.<key>.distill`` resolved (a name, or a mapping with parameters; kd's defaults from
    ``kd:``); ``ValueError`` naming the setting if it does not resolve."""
    return resolve_method(cfg.zoo[key].distill, cfg.kd, f"zoo.{key}.distill")


def _feature_problems(cfg: StudyConfig, key: str, method: DistillMethod) -> list[str]:
    """A feature method's student ``key``: one teacher, and student and teacher architectures that
    declare their stages (registered so: ``models.declares_stages``; the check reads the config only,
    nothing is built)."""
    teachers = list(cfg.zoo[key].teachers)
    problems = []
    if len(teachers) != 1:
        problems.append(
            f"zoo.{key}.teachers: {method.method} is a feature method; feature methods distil one teacher, "
            f"not {len(teachers)} ({', '.join(teachers)})"
        )
    roles = [(f"zoo.{key}.arch", cfg.zoo[key].arch)]
    roles += [(f"zoo.{t}.arch (teacher of {key})", cfg.zoo[t].arch) for t in teachers if t in cfg.zoo]
    for where, arch in roles:
        if not declares_stages(arch):
            problems.append(
                f"{where}: {arch} does not declare its stages, which {method.method} (a feature method) "
                f"distils; use an architecture that does ({', '.join(staged_architectures())}), or register "
                f"{arch} with register_architecture(name, builder, stages=True) once its Classifier declares "
                "them (a StageLayout)"
            )
    return problems


def distill_problems(cfg: StudyConfig) -> list[str]:
    """One ``key: problem`` line per student whose method does not resolve or cannot train as
    configured; empty when all do."""
    problems = []
    for key, spec in cfg.zoo.items():
        if not spec.teachers:
            continue
        try:
            method = _method(cfg, key)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        augment = model_train_config(cfg, key).augment
        if method.needs_all_teacher_logits and augment != "none":
            problems.append(
                f"zoo.{key}.distill: {method.method} uses the teachers' logits of the whole training set, "
                f"which do not exist under augment={augment}; use augment none for this student"
            )
        if method.needs_features:
            problems.extend(_feature_problems(cfg, key, method))
        if spec.label_smoothing:
            problems.append(
                f"zoo.{key}.label_smoothing: applies to models trained without a teacher; a student's loss "
                "is its distillation method's (set its parameters in distill)"
            )
    return problems


def model_recipe(cfg: StudyConfig, key: str) -> ModelRecipe:
    """Model ``key``'s recipe (its names already checked: ``study.resolve.check_names``)."""
    spec = cfg.zoo[key]
    own = model_weights(cfg, key)
    backbone = cfg.weights[spec.arch] if spec.arch in BACKBONES and own is None else None
    return ModelRecipe(
        key=key,
        spec=spec,
        train=model_train_config(cfg, key),
        weights=backbone,
        method=_method(cfg, key) if spec.teachers else None,
        own_weights=own,
    )


def model_weights(cfg: StudyConfig, key: str) -> str | None:
    """``weights.<key>``: model ``key``'s own weights entry, unless ``key`` names a registered backbone
    (``weights.resnet50`` is the resnet50 architecture's entry, whatever model key it also is)."""
    return cfg.weights.get(key) if key not in BACKBONES else None


def model_recipes(cfg: StudyConfig) -> Recipes:
    """The recipe of every model the study trains (``models`` and their teachers), teachers first."""
    return {key: model_recipe(cfg, key) for key in training_order(cfg.zoo, cfg.models)}
