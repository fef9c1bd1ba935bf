"""Names in a study's config resolved against the registries, in one place above them.

``config`` is a leaf: it checks what needs no registry (types, ranges, references between model
keys). Datasets, architectures, distillation methods, augmentations, pretrained backbones, optimizers
and schedules are registered one floor up (models, training, data), so their names are checked here
(each registry's "unknown X 'y'; known: ..." line), with the same one-paragraph error as any other
bad config value; so is what a registered name needs of the rest of the config (a multistep
schedule's milestones within the model's epochs).
"""

from __future__ import annotations

from pathlib import Path

from distillbench.config import (
    StudyConfig,
    describe_source,
    invalid_config,
    load_config,
    model_train_config,
    training_order,
)
from distillbench.data import dataset_problem
from distillbench.data.augment import augmentation_problem
from distillbench.models import ARCHITECTURES, BACKBONES
from distillbench.models.timm_model import timm_model_problem
from distillbench.plugins import canonical_plugin, load_plugins
from distillbench.registry import unknown_name
from distillbench.study.recipe import distill_problems, model_weights
from distillbench.training.optim import OPTIMIZERS, SCHEDULES, multistep_problem


def unresolved_names(cfg: StudyConfig) -> list[str]:
    """One ``key: problem`` line per name that no registry knows (or that a trained model's settings
    cannot serve); empty when all resolve."""
    problems = []
    if problem := dataset_problem(cfg.data.dataset, "data.dataset"):
        problems.append(problem)
    for where, name in [("train.augment", cfg.train.augment)] + [
        (f"zoo.{key}.augment", spec.augment) for key, spec in cfg.zoo.items() if spec.augment is not None
    ]:
        if problem := augmentation_problem(name, where):
            problems.append(problem)
    for key, spec in cfg.zoo.items():
        for field, registry in (("arch", ARCHITECTURES), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            if getattr(spec, field) not in registry:
                problems.append(registry.unknown(getattr(spec, field), f"zoo.{key}.{field}"))
    problems += distill_problems(cfg)  # the students' methods, resolved where the recipes are
    problems += weights_problems(cfg)
    for key in training_order(cfg.zoo, cfg.models):
        spec = cfg.zoo[key]
        # Checked here, not only when training builds it: hours into a study is too late to learn it.
        if spec.schedule == "multistep" and (problem := multistep_problem(spec, model_train_config(cfg, key).epochs)):
            problems.append(f"zoo.{key}.milestones: {problem}")
        arch = spec.arch
        if arch in BACKBONES and arch not in cfg.weights and model_weights(cfg, key) is None:
            problems.append(
                f"weights.{arch}: missing, but model {key!r} is a {arch}; set it to imagenet, none or a file path"
            )
    return problems


def weights_problems(cfg: StudyConfig) -> list[str]:
    """The ``weights:`` entries that name nothing (neither a registered backbone nor a model key) or
    that their model cannot take (a loaded model's entry is a checkpoint's PATH, and it distils
    nothing); the timm models of the study without an entry, or naming no timm model."""
    problems = []
    for name, source in cfg.weights.items():
        spec = cfg.zoo.get(name) if name not in BACKBONES else None
        if name not in BACKBONES and spec is None:
            known = [*BACKBONES, *cfg.zoo]
            problems.append(unknown_name("pretrained backbone or model key", name, known, f"weights.{name}"))
        elif spec is not None and spec.arch != "timm" and source in ("imagenet", "none"):
            problems.append(
                f"weights.{name}: {source!r}, but model {name!r} is a {spec.arch}, whose entry is the PATH of that "
                "whole model's checkpoint (loaded and evaluated, not trained); give the file's path, or remove the "
                "entry to train the model"
            )
        elif spec is not None and spec.arch != "timm" and spec.teachers:
            problems.append(
                f"zoo.{name}.teachers: model {name!r} is loaded from weights.{name}, not trained, so it distils "
                "nothing; remove its teachers or its weights entry"
            )
    for key in training_order(cfg.zoo, cfg.models):
        spec = cfg.zoo[key]
        if spec.input_norm == "pretrained" and spec.arch != "timm":
            problems.append(
                f"zoo.{key}.input_norm: pretrained (a timm model's own mean/std) applies to arch timm only; use "
                f"imagenet, cifar100 or none for a {spec.arch}"
            )
        if spec.arch != "timm":
            continue
        if key in BACKBONES:
            problems.append(
                f"zoo.{key}: a timm model's key cannot be a backbone's name (weights.{key} is the {key} "
                "architecture's entry); rename the model key"
            )
        elif model_weights(cfg, key) is None:
            problems.append(
                f"weights.{key}: missing, but model {key!r} is arch timm; set it to imagenet, none or a file path"
            )
        if problem := timm_model_problem(spec.timm_model or "", f"zoo.{key}.timm_model"):
            problems.append(problem)
    return problems


def check_names(cfg: StudyConfig, source: str = "the study's config") -> StudyConfig:
    """``cfg`` if every name in it resolves, else the one-paragraph error listing those that do not.
    The study's plugins are imported first: their registrations are names like any other."""
    load_plugins(cfg.plugins)
    problems = unresolved_names(cfg)
    if problems:
        raise invalid_config(problems, source)
    return cfg


def load_study_config(path: Path | None = None, overrides: list[str] = (), plugins: list[str] = ()) -> StudyConfig:
    """``config.load_config`` with ``plugins`` (``--plugin``) added to its ``plugins:``, then
    ``check_names``: what the command line runs. A plugin file's path is kept absolute: the config's
    own relative to the config file, ``--plugin``'s relative to the working directory."""
    cfg = load_config(path, overrides)
    base = path.expanduser().resolve().parent if path is not None else None
    listed = [canonical_plugin(name, base) for name in cfg.plugins]
    given = [canonical_plugin(name) for name in plugins]
    merged = list(dict.fromkeys(listed + given))
    if merged != cfg.plugins:
        cfg = cfg.model_copy(update={"plugins": merged})
    return check_names(cfg, describe_source(path, overrides))
