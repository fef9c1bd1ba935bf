"""What a run trains on: frozen-layer activations and teacher logits from the cache, or images and
teachers run on every batch, and the policy of when each applies.

Caches hold deterministic tensors only: a frozen prefix's output on a split, a trained teacher's
logits on a split. With augmentation nothing of a batch is deterministic, so every model trains on
images and teachers see the very batch the student sees.

A feature method's student (``DistillMethod.needs_features``) always trains on images as a whole
``Classifier`` (its stages are the whole network's). Its teachers' ``Features`` are computed on every
batch, on the very view the student sees, when batches are augmented; without augmentation they are
computed once and kept in memory within ``perf.teacher_feature_memory_mb`` (the log says which).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from distillbench.config import PerfConfig
from distillbench.data import StudyData
from distillbench.errors import UserError
from distillbench.models.classifier import Classifier, Features
from distillbench.study.models import StudyModels
from distillbench.study.plan import RunKey
from distillbench.study.recipe import Recipes
from distillbench.training.cache import TensorCache, cache_key, hash_module
from distillbench.training.loop import (
    FeatureObjective,
    Objective,
    predict,
    smoothed_cross_entropy,
)
from distillbench.training.randomness import derive_seed, global_rng
from distillbench.training.runtime import Runtime


def _say(line: str) -> None:
    print(line, flush=True)


class RunInputs:
    """Per run: the trainable module, what it sees on each split, and its training objective."""

    def __init__(
        self,
        recipes: Recipes,
        perf: PerfConfig,
        data: StudyData,
        runtime: Runtime,
        models: StudyModels,
        cache: TensorCache,
        log: Callable[[str], None] = _say,
    ):
        """``perf``: the study's effective speed switches (``PerfConfig.effective``)."""
        self.recipes, self.perf, self.data, self.runtime = recipes, perf, data, runtime
        self.models, self.cache, self.log = models, cache, log
        self._model_hashes: dict[RunKey, str] = {}

    def _infer(self, module: torch.nn.Module, inputs: torch.Tensor, desc: str | None = None) -> torch.Tensor:
        return predict(module, inputs, self.runtime, desc=desc)

    def inputs_for(
        self, key: str, model: Classifier, cached: bool = True
    ) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
        """Per split, what the trainable part sees, and that part: cached prefix output + body, or all.
        ``cached=False``: images and the whole model, whatever ``perf.cache_features`` says."""
        images = {name: split.images for name, split in self.data.splits.items()}
        if not (cached and self.perf.cache_features) or model.prefix_is_trivial:
            return images, model
        prefix_hash = hash_module(model.prefix)
        features = {
            name: self.cache.get(
                cache_key("prefix", prefix_hash, self.data.fingerprint, name, self.runtime.numerics),
                lambda name=name: self._infer(model.prefix, images[name], f"{key} frozen layers ({name})"),
                what=f"{key} frozen-layer activations ({name})",
            )
            for name in images
        }
        return features, model.body

    def logits(self, key: str, seed: int, split: str) -> torch.Tensor:
        """A finished run's logits on a split (cached when ``perf.cache_teacher_logits``)."""
        model = self.models.trained_model(key, seed)

        def compute() -> torch.Tensor:
            inputs, module = self.inputs_for(key, model)
            return self._infer(module, inputs[split], f"{key} logits ({split})")

        if not self.perf.cache_teacher_logits:
            return compute()
        return self.cache.get(self._logits_key(key, seed, split), compute, what=f"{key} seed {seed} logits ({split})")

    def _logits_key(self, key: str, seed: int, split: str) -> str:
        if (key, seed) not in self._model_hashes:
            self._model_hashes[(key, seed)] = hash_module(self.models.trained_model(key, seed))
        return cache_key("logits", self._model_hashes[(key, seed)], self.data.fingerprint, split, self.runtime.numerics)

    def students_logits(self, key: str, seed: int) -> dict[str, torch.Tensor]:
        """A finished teacher's cache entries that its students read (its logits on the training
        split), keyed as the cache keys them, to hand to a process that has no access to this
        cache; empty when teacher logits are not cached."""
        if not self.perf.cache_teacher_logits:
            return {}
        return {self._logits_key(key, seed, "train"): self.logits(key, seed, "train")}

    def training_inputs(self, key: str, model: Classifier) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
        """``inputs_for``, except that with augmentation every model trains on images: an augmented
        batch is new each step, so no cached activation of it exists."""
        method = self.recipes[key].method
        if method is not None and method.needs_features:  # its stages are the whole network's
            return self.inputs_for(key, model, cached=False)
        augmented = self.recipes[key].augmentation is not None
        if augmented and self.perf.cache_features and not model.prefix_is_trivial:
            self._say_uncached(key, "frozen-layer activations", "frozen layers")
        return self.inputs_for(key, model, cached=not augmented)

    def _say_uncached(self, key: str, cached: str, runs: str) -> None:
        self.log(
            f"[{key}] augment={self.recipes[key].augment}: cached {cached} do not apply to augmented "
            f"batches, so the {runs} run on every batch"
        )

    def objective_for(
        self, key: str, seed: int, trains_on_images: bool, student: Classifier | None = None
    ) -> Objective | FeatureObjective:
        """The training loss. A student's teachers come from cached logits, or run on every batch
        (the naive path, and any augmentation: teachers must see the batch the student sees); a
        feature method's objective is ``feature_objective`` (``student``: the run's model, whose
        shapes its learned parts are built for)."""
        recipe = self.recipes[key]
        method = recipe.method
        if method is None:
            return smoothed_cross_entropy(recipe.spec.label_smoothing)
        if method.needs_features:
            return self.feature_objective(key, seed, student)
        augmented = recipe.augmentation is not None
        if self.perf.cache_teacher_logits and not augmented or method.needs_all_teacher_logits:
            teachers = torch.stack([self.logits(t, seed, "train") for t in recipe.teachers])  # [K, N, C]
            teachers = method.prepare(teachers, self.data.train.labels, seed).to(self.runtime.device)
            return lambda idx, x, y, logits, epoch: method.loss(logits, teachers[:, idx], y, epoch)
        if self.perf.cache_teacher_logits:
            self._say_uncached(key, "teacher logits", "teachers")
        models = [self.models.trained_model(t, seed) for t in recipe.teachers]
        # The student's batch (its augmented view, resized by each teacher's own prefix) is the
        # teachers' input, unless the student trains on cached activations.
        images = None if trains_on_images else self.data.train.images.to(self.runtime.device)

        def objective(
            idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, epoch: int
        ) -> torch.Tensor:
            batch = x if images is None else images[idx]
            with torch.no_grad(), self.runtime.autocast():
                teachers = torch.stack([t(batch).float() for t in models])
            return method.loss(logits, teachers, y, epoch)

        return objective

    def feature_objective(self, key: str, seed: int, student: Classifier | None = None) -> FeatureObjective:
        """A feature method's loss: each teacher's ``Features`` on the student's very batch (its
        augmented view; eval mode, no gradients, the runtime's autocast), then ``method.feature_loss``
        with the run's learned parts (``learned_parts``, built from one probe batch's shapes of
        ``student``, else a fresh model of its architecture, with the run's ``distill`` stream).

        Without augmentation the teacher's features are the same every epoch: with
        ``perf.cache_teacher_logits`` they are computed once on the training split and kept in memory
        (only the fields the method reads, ``teacher_features``), if they take at most
        ``perf.teacher_feature_memory_mb``; otherwise on every batch. The log says which, and why."""
        recipe = self.recipes[key]
        method = recipe.method
        assert method is not None and method.needs_features
        models = [self.models.trained_model(t, seed).eval() for t in recipe.teachers]
        probe = self.data.train.images[:2]
        teacher_probe = self._teacher_features(models, self.runtime.to_device(probe))
        parts = self._learned_parts(key, seed, student, probe, teacher_probe[0])
        cached = self._cached_teacher_features(key, models, teacher_probe)

        def loss(idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, student: Features, epoch: int) -> torch.Tensor:
            if cached is not None:
                teachers = [_index_features(c, idx) for c in cached]
            else:
                teachers = self._teacher_features(models, x)
            return method.feature_loss(student, teachers, y, epoch, parts=parts, index=idx)

        return FeatureObjective(loss, parts, teachers_online=cached is None)

    def _teacher_features(self, models: list[Classifier], x: torch.Tensor) -> list[Features]:
        with torch.no_grad(), self.runtime.autocast():
            features = [t.forward_features(x) for t in models]
        return [f.map(torch.Tensor.float) for f in features]  # as the logits path casts its logits

    def _learned_parts(
        self, key: str, seed: int, student: Classifier | None, probe: torch.Tensor, teacher: Features
    ) -> torch.nn.Module | None:
        """The method's learned parts for this run, built on the CPU from the probe's shapes."""
        method = self.recipes[key].method
        student = student if student is not None else self.models.initial(key, seed)
        parts = self._build_parts(key, _probe_features(student, probe), teacher, seed)
        if parts is not None:
            count = sum(p.numel() for p in parts.parameters())
            self.log(f"[{key}] {method.method}: learned parts of {count:,} parameters train with the student")
        return parts

    def _build_parts(self, key: str, student: Features, teacher: Features, seed: int) -> torch.nn.Module | None:
        """``method.learned_parts`` for these shapes, from the run's ``distill`` stream, its problems
        (a pair it cannot join) as the one-paragraph ``UserError``."""
        method = self.recipes[key].method
        try:
            with global_rng(derive_seed(seed, "distill")):
                return method.learned_parts(student, teacher.map(torch.Tensor.cpu), self.data.train.labels, seed)
        except ValueError as exc:
            teacher_key = self.recipes[key].teachers[0]
            raise UserError(
                f"zoo.{key}.distill: {method.method} cannot distil {teacher_key} ({self.recipes[teacher_key].arch}) "
                f"into {key} ({self.recipes[key].arch}): {exc}. Change the method's settings or the pair, and run "
                "again."
            ) from None

    def check_feature_students(self) -> None:
        """Stop with a one-paragraph error if a feature student cannot train with its teacher (a network
        that computes no stages, stages its method cannot pair, such as ReviewKD's unequal counts or a
        FitNets hint layer one network lacks): the architectures built untrained, their shapes probed
        on two training images, the learned parts built and dropped. For the study's preflight: the
        student would otherwise fail after its teachers trained, hours later."""
        probe = self.data.train.images[:2]
        shapes: dict[str, Features] = {}
        for key, recipe in self.recipes.items():
            if recipe.method is None or not recipe.method.needs_features:
                continue
            for model in (key, *recipe.teachers):
                if model not in shapes:
                    shapes[model] = self._probe_untrained(model, probe)
            self._build_parts(key, shapes[key], shapes[recipe.teachers[0]], seed=0)

    def _probe_untrained(self, key: str, probe: torch.Tensor) -> Features:
        arch = self.recipes[key].arch
        try:
            return _probe_features(self.models.untrained(key), probe)
        except NotImplementedError as exc:
            raise UserError(
                f"zoo.{key}.arch: {arch} computes no stage outputs ({exc}), which its feature-distillation "
                "student needs; choose an architecture whose networks do (for timm: one with feature_info)."
            ) from None

    def _cached_teacher_features(
        self, key: str, models: list[Classifier], probe: list[Features]
    ) -> list[Features] | None:
        """The teachers' features on the whole training split (the fields the method reads), or None
        where they are computed on every batch: augmented batches, caching off, over the budget."""
        recipe, method = self.recipes[key], self.recipes[key].method
        say = f"[{key}] {method.method}: teacher features are computed on every batch"
        if recipe.augmentation is not None:
            self.log(f"{say} (augmented batches: each is new)")
            return None
        if not self.perf.cache_teacher_logits:
            self.log(f"{say} (perf.cache_teacher_logits is off)")
            return None
        mib = sum(kept_teacher_mib(f, method.teacher_features, len(self.data.train.labels)) for f in probe)
        budget = self.perf.teacher_feature_memory_mb
        if mib > budget:
            self.log(
                f"{say} (kept in memory they would take {mib:,.0f} MiB, over perf.teacher_feature_memory_mb {budget})"
            )
            return None
        cached = self._teacher_features_of_split(models, method.teacher_features)
        self.log(f"[{key}] {method.method}: teacher features computed once and kept in memory ({mib:,.1f} MiB)")
        return cached

    def _teacher_features_of_split(self, models: list[Classifier], names: frozenset[str]) -> list[Features]:
        """Each teacher's ``Features`` of the whole training split, only the fields ``names`` kept,
        written batch by batch into tensors allocated once: the peak is the kept size plus one batch."""
        images, batch = self.data.train.images, self.runtime.inference_batch
        whole: list[Features] = []
        for start in range(0, len(images), batch):
            features = self._teacher_features(models, self.runtime.to_device(images[start : start + batch]))
            features = [_keep(f, names) for f in features]
            if not whole:
                whole = [
                    f.map(lambda t: t.new_empty((len(images), *t.shape[1:])) if t.numel() else t) for f in features
                ]
            for kept, part in zip(whole, features):
                for rows, values in zip(_tensors(kept), _tensors(part)):
                    rows[start : start + len(values)] = values
        return whole


def kept_teacher_mib(probe: Features, names: frozenset[str], images: int) -> float:
    """MiB that a teacher's ``Features`` fields ``names`` (``DistillMethod.teacher_features``) take for
    ``images`` images in float32, from ``probe`` (the features of a batch of any size)."""
    return sum(t[0].numel() * 4 for t in _tensors(_keep(probe, names))) * images / 2**20


_UNREAD = torch.empty(0)  # a field the method does not read: not kept


def _keep(features: Features, names: frozenset[str]) -> Features:
    """``features`` with only the fields ``names`` (the others empty); ``preactivation``: the stages
    before their last activation, or the stages themselves where the architecture has none."""
    preact = "preactivation" in names and features.preact_stages is not None
    stages = "stages" in names or ("preactivation" in names and not preact)
    return Features(
        list(features.stages) if stages else [],
        features.embedding if "embedding" in names else _UNREAD,
        features.logits if "logits" in names else _UNREAD,
        list(features.preact_stages) if preact else None,
    )


def _tensors(features: Features) -> list[torch.Tensor]:
    """Every kept tensor of ``features``."""
    tensors = [*features.stages, *(features.preact_stages or []), features.embedding, features.logits]
    return [t for t in tensors if t.numel()]


def _probe_features(model: Classifier, probe: torch.Tensor) -> Features:
    """``model``'s float32 ``Features`` of ``probe`` on the CPU, in eval mode, without gradients; the
    model's mode is left as it was."""
    was_training, device = model.training, next(model.parameters()).device
    with torch.no_grad():
        features = model.eval().forward_features(probe.to(device))
    model.train(was_training)
    return features.map(lambda t: t.float().cpu())


def _index_features(features: Features, idx: torch.Tensor) -> Features:
    """The rows ``idx`` of every kept tensor of ``features`` (fields not kept stay empty)."""
    return features.map(lambda t: t[idx] if t.numel() else t)
