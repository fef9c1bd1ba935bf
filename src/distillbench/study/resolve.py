"""Names in a study's config resolved against the registries, in one place above them.

``config`` is a leaf: it checks what needs no registry (types, ranges, references between model
keys). Datasets, architectures, distillation methods, augmentations and pretrained backbones are registered
one floor up (models, training, data), so their names are checked here, with the same
one-paragraph error as any other bad config value.
"""

from __future__ import annotations

from pathlib import Path

from distillbench.config import StudyConfig, describe_source, invalid_config, load_config, training_order
from distillbench.data import DATASETS
from distillbench.data.augment import AUGMENTATIONS, unknown_augmentations
from distillbench.models import ARCHITECTURES, BACKBONES
from distillbench.training.distill import resolve_method


def unresolved_names(cfg: StudyConfig) -> list[str]:
    """One ``key: problem`` line per name that no registry knows; empty when all resolve."""
    problems = []
    if cfg.data.dataset not in DATASETS:
        problems.append(f"data.dataset: unknown dataset {cfg.data.dataset!r}; known: {', '.join(DATASETS)}")
    known = ", ".join(AUGMENTATIONS)
    for where, name in [("train.augment", cfg.train.augment)] + [
        (f"zoo.{key}.augment", spec.augment) for key, spec in cfg.zoo.items() if spec.augment is not None
    ]:
        if unknown_augmentations(name):
            problems.append(
                f"{where}: unknown augmentation {unknown_augmentations(name)[0]!r}; known: {known} (a+b: both)"
            )
    for key, spec in cfg.zoo.items():
        if spec.arch not in ARCHITECTURES:
            problems.append(f"zoo.{key}.arch: unknown architecture {spec.arch!r}; known: {', '.join(ARCHITECTURES)}")
        if spec.teachers:
            try:
                method = resolve_method(spec.distill, cfg.kd, f"zoo.{key}.distill")
            except ValueError as exc:
                problems.append(str(exc))
                continue
            augment = spec.augment or cfg.train.augment
            if method.needs_all_teacher_logits and augment != "none":
                problems.append(
                    f"zoo.{key}.distill: {method.method} uses the teachers' logits of the whole training set, "
                    f"which do not exist under augment={augment}; use augment none for this student"
                )
            if spec.label_smoothing:
                problems.append(
                    f"zoo.{key}.label_smoothing: applies to models trained without a teacher; a student's loss "
                    "is its distillation method's (set its parameters in distill)"
                )
    for arch in cfg.weights:
        if arch not in BACKBONES:
            problems.append(f"weights.{arch}: not a pretrained backbone; backbones are {', '.join(sorted(BACKBONES))}")
    for key in training_order(cfg.zoo, cfg.models):
        arch = cfg.zoo[key].arch
        if arch in BACKBONES and arch not in cfg.weights:
            problems.append(
                f"weights.{arch}: missing, but model {key!r} is a {arch}; set it to imagenet, none or a file path"
            )
    return problems


def check_names(cfg: StudyConfig, source: str = "the study's config") -> StudyConfig:
    """``cfg`` if every name in it resolves, else the one-paragraph error listing those that do not."""
    problems = unresolved_names(cfg)
    if problems:
        raise invalid_config(problems, source)
    return cfg


def load_study_config(path: Path | None = None, overrides: list[str] = ()) -> StudyConfig:
    """``config.load_config`` and then ``check_names``: what the command line runs."""
    return check_names(load_config(path, overrides), describe_source(path, overrides))
