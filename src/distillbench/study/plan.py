"""What a study runs: one ``RunSpec`` per (model, seed), with its identity and the runs it needs.

A run's identity is the fingerprint of everything its result depends on (its model's config, the
training settings, the seed, the data's pixels, the numerics, the backbone weights, and for a student
its teachers' fingerprints). ``study.store`` judges a saved run against it; the teachers' checkpoint
hashes are checked there too, since they are known only once the teachers have trained.

The plan lists runs seed by seed, teachers before their students, which is the order a serial
executor follows: after the first seed a complete single-seed study is on disk. ``ready`` and
``batch_groups`` give an executor what it can run at once and what it can train as one group.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from distillbench.atomic import file_sha256
from distillbench.config import StudyConfig, model_train_config, training_order
from distillbench.models import BACKBONES
from distillbench.training.distill import DistillMethod, resolve_method
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

# Model settings a fingerprint leaves out: the title names the model; epochs, batch size and augment
# enter resolved (``model_train_config``); a student's method enters resolved, and a model without
# teachers distils nothing.
NOT_IN_IDENTITY = {"title", "epochs", "batch_size", "augment", "distill"}


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


def batch_groups(runs: Iterable[RunSpec], cfg: StudyConfig) -> list[list[RunSpec]]:
    """``runs`` gathered into groups that can train as one batched model: the same architecture and
    the same model settings apart from teachers, title and distillation method (so the same inputs
    and optimiser); plan order kept, within and across groups."""
    groups: dict[str, list[RunSpec]] = {}
    for run in runs:
        settings = cfg.zoo[run.model].model_dump(mode="json", exclude={"teachers", "title", "distill"})
        groups.setdefault(json.dumps(settings, sort_keys=True), []).append(run)
    return list(groups.values())


def weights_source(cfg: StudyConfig, arch: str) -> str | None:
    """``weights.<arch>`` for a pretrained backbone (the config requires one), else None."""
    return cfg.weights[arch] if arch in BACKBONES else None


class Planner:
    """Fingerprints of a study's runs (memoised)."""

    def __init__(self, cfg: StudyConfig, data_fingerprint: str, runtime: Runtime):
        self.cfg, self.data_fingerprint, self.runtime = cfg, data_fingerprint, runtime
        self._fingerprints: dict[RunKey, str] = {}

    def _weights_identity(self, arch: str) -> str | None:
        source = weights_source(self.cfg, arch)
        if source is None or source == "none":
            return source
        if source == "imagenet":
            return f"imagenet:{BACKBONES[arch].imagenet.url}"
        path = Path(source).expanduser()
        if not path.is_file():
            return f"file:{path}"
        return f"file:{file_sha256(path)}"

    def _method(self, key: str) -> DistillMethod:
        return resolve_method(self.cfg.zoo[key].distill, self.cfg.kd, f"zoo.{key}.distill")

    def fingerprint(self, key: str, seed: int) -> str:
        """Hash of everything a run's result depends on; a finished run is reused only if equal."""
        if (key, seed) not in self._fingerprints:
            spec = self.cfg.zoo[key]
            payload = {
                "identity": IDENTITY_VERSION,
                # What the model is and how it trains, resolved: a teacher that sets its own epochs, batch
                # size and augmentation does not change when train: does; its title changes nothing.
                "spec": spec.model_dump(mode="json", exclude=NOT_IN_IDENTITY),
                "train": model_train_config(self.cfg, key).model_dump(mode="json"),
                "seed": seed,
                "data": self.data_fingerprint,
                "runtime": self.runtime.identity(),
                "weights": self._weights_identity(spec.arch),
                # The method with every parameter resolved: kd's defaults come from the kd: section.
                "distill": self._method(key).model_dump(mode="json") if spec.teachers else None,
                "teachers": [self.fingerprint(t, seed) for t in spec.teachers],
            }
            digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
            self._fingerprints[(key, seed)] = digest
        return self._fingerprints[(key, seed)]

    def run(self, key: str, seed: int) -> RunSpec:
        spec = self.cfg.zoo[key]
        return RunSpec(key, seed, self.fingerprint(key, seed), tuple(spec.teachers), spec.arch)

    def plan(self) -> Plan:
        order = training_order(self.cfg.zoo, self.cfg.models)
        return Plan(tuple(self.run(key, seed) for seed in self.cfg.seeds for key in order))
