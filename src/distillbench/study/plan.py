"""What a study runs: one ``RunSpec`` per (model, seed), with its identity and the runs it needs.

A run's identity is the fingerprint of everything its result depends on (its model's config, the
training settings, the seed, the data's pixels, the numerics, the backbone weights, and for a student
its teachers' fingerprints). Weights files enter by their content's sha256: a backbone's, a timm
model's, a loaded model's checkpoint (whose settings enter only as far as its predictions depend on
them: ``ModelRecipe.identity``). ``study.store`` judges a saved run against it; the teachers' checkpoint
hashes are checked there too, since they are known only once the teachers have trained.

The plan lists runs seed by seed, teachers before their students, which is the order a serial
executor follows: after the first seed a complete single-seed study is on disk. ``ready`` gives
an executor what it can run at once (``study.scheduling`` orders and groups it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from distillbench.atomic import file_sha256
from distillbench.config import StudyConfig
from distillbench.models import BACKBONES
from distillbench.study.recipe import ModelRecipe, Recipes, model_recipes
from distillbench.training.runtime import Runtime

# Part of every fingerprint: runs written by code whose results differ are stale, and retrained
# rather than reused. 2: float32 logits, frozen BatchNorm kept frozen on the cached path, per-run
# random streams, checkpoint hashes. 3: dropout masks drawn by dropout_scale on every device (CUDA
# used F.dropout's kernel), so that batched groups reproduce them; and the fingerprint holds the
# resolved distillation method (its parameters; kd's from the kd: section) in place of the kd: section.
# 4: the device type is part of the identity; the fingerprint holds the model's resolved training
# settings (not the global train: section, nor the title); weight decay spares biases and
# normalisation parameters; run.json holds checksums of every file.
IDENTITY_VERSION = 4

RunKey = tuple[str, int]  # (model key, seed)


@dataclass(frozen=True)
class RunSpec:
    """One training run: model ``model`` with seed ``seed``; a student needs its teachers' runs of
    the same seed."""

    model: str
    seed: int
    fingerprint: str
    teachers: tuple[str, ...]
    arch: str | None = None  # None only when read back from a plan.json of an older distillbench

    @property
    def key(self) -> RunKey:
        return (self.model, self.seed)

    @property
    def needs(self) -> tuple[RunKey, ...]:
        return tuple((teacher, self.seed) for teacher in self.teachers)


@dataclass(frozen=True)
class Plan:
    runs: tuple[RunSpec, ...]  # seed by seed; within a seed, every teacher before its students

    def ready(self, done: Iterable[RunKey]) -> list[RunSpec]:
        """The runs not in ``done`` whose teachers all are: what can run now, in plan order."""
        done = set(done)
        return [run for run in self.runs if run.key not in done and all(need in done for need in run.needs)]


class Planner:
    """Fingerprints of a study's runs (memoised), from the models' recipes."""

    def __init__(self, cfg: StudyConfig, data_fingerprint: str, runtime: Runtime, recipes: Recipes | None = None):
        self.cfg, self.data_fingerprint, self.runtime = cfg, data_fingerprint, runtime
        self.recipes = recipes if recipes is not None else model_recipes(cfg)
        self._fingerprints: dict[RunKey, str] = {}

    def _weights_identity(self, recipe: ModelRecipe) -> str | None:
        """Where the run's starting weights come from; a file by its content (a missing one by its
        path: the run stops when it reads it)."""
        source = recipe.own_weights if recipe.own_weights is not None else recipe.weights
        if source is None or source == "none":
            return source
        if source == "imagenet" and recipe.arch == "timm":
            from distillbench.models.timm_model import pretrained_weights_identity  # timm: an optional extra

            return pretrained_weights_identity(recipe.spec.timm_model or "")
        if source == "imagenet":
            return f"imagenet:{BACKBONES[recipe.arch].imagenet.url}"
        path = Path(source).expanduser()
        kind = "checkpoint" if recipe.loaded else "file"  # loaded whole, or a network's starting weights
        if not path.is_file():
            return f"{kind}:{path}"
        return f"{kind}:{file_sha256(path)}"

    def fingerprint(self, key: str, seed: int) -> str:
        """Hash of everything a run's result depends on; a finished run is reused only if equal."""
        if (key, seed) not in self._fingerprints:
            recipe = self.recipes[key]
            payload = {
                "identity": IDENTITY_VERSION,
                **recipe.identity(),  # the model's settings, its merged training settings, its method
                "seed": seed,
                "data": self.data_fingerprint,
                "runtime": self.runtime.identity(),
                "weights": self._weights_identity(recipe),
                "teachers": [self.fingerprint(t, seed) for t in recipe.teachers],
            }
            digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
            self._fingerprints[(key, seed)] = digest
        return self._fingerprints[(key, seed)]

    def run(self, key: str, seed: int) -> RunSpec:
        recipe = self.recipes[key]
        return RunSpec(key, seed, self.fingerprint(key, seed), recipe.teachers, recipe.arch)

    def plan(self) -> Plan:
        return Plan(tuple(self.run(key, seed) for seed in self.cfg.seeds for key in self.recipes))
