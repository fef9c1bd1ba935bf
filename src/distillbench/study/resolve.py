"""Names in a study's config resolved against the registries, in one place above them.

``config`` is a leaf: it checks what needs no registry (types, ranges, references between model
keys). Datasets, architectures, distillation methods, augmentations, pretrained backbones, optimizers
and schedules are registered one floor up (models, training, data), so their names are checked here
(each registry's "unknown X 'y'; known: ..." line), with the same one-paragraph error as any other
bad config value.
"""

from __future__ import annotations

from pathlib import Path

from distillbench.config import StudyConfig, describe_source, invalid_config, load_config, training_order
from distillbench.data import dataset_problem
from distillbench.data.augment import augmentation_problem
from distillbench.models import ARCHITECTURES, BACKBONES
from distillbench.plugins import canonical_plugin, load_plugins
from distillbench.study.recipe import distill_problems
from distillbench.training.optim import OPTIMIZERS, SCHEDULES


def unresolved_names(cfg: StudyConfig) -> list[str]:
    """One ``key: problem`` line per name that no registry knows; empty when all resolve."""
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
    for arch in cfg.weights:
        if arch not in BACKBONES:
            problems.append(BACKBONES.unknown(arch, f"weights.{arch}"))
    for key in training_order(cfg.zoo, cfg.models):
        arch = cfg.zoo[key].arch
        if arch in BACKBONES and arch not in cfg.weights:
            problems.append(
                f"weights.{arch}: missing, but model {key!r} is a {arch}; set it to imagenet, none or a file path"
            )
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
