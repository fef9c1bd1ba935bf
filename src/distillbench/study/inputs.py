"""What a run trains on: frozen-layer activations and teacher logits from the cache, or images and
teachers run on every batch, and the policy of when each applies.

Caches hold deterministic tensors only: a frozen prefix's output on a split, a trained teacher's
logits on a split. With augmentation nothing of a batch is deterministic, so every model trains on
images and teachers see the very batch the student sees.

A feature method's student (``DistillMethod.needs_features``) always trains on images as a whole
``Classifier`` (its stages are the whole network's), and its teachers' ``Features`` are computed on
every batch, on the very view the student sees, whatever the augmentation: they are never cached
(the log says so once per run).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from distillbench.config import PerfConfig
from distillbench.data import StudyData
from distillbench.models.classifier import Classifier, Features
from distillbench.study.models import StudyModels
from distillbench.study.plan import RunKey
from distillbench.study.recipe import Recipes
from distillbench.training.cache import TensorCache, cache_key, hash_module
from distillbench.training.loop import (
    FeatureObjective,
    Objective,
    float_features,
    predict,
    smoothed_cross_entropy,
)
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

    def objective_for(self, key: str, seed: int, trains_on_images: bool) -> Objective | FeatureObjective:
        """The training loss. A student's teachers come from cached logits, or run on every batch
        (the naive path, and any augmentation: teachers must see the batch the student sees); a
        feature method's teachers always run on every batch (``feature_objective``)."""
        recipe = self.recipes[key]
        method = recipe.method
        if method is None:
            return smoothed_cross_entropy(recipe.spec.label_smoothing)
        if method.needs_features:
            return self.feature_objective(key, seed)
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

    def feature_objective(self, key: str, seed: int) -> FeatureObjective:
        """A feature method's loss: each teacher's ``forward_features`` on the student's very batch
        (its augmented view), in eval mode, without gradients and under the runtime's autocast, then
        ``method.feature_loss``. Not cached even without augmentation (caching them where they fit
        in memory is allowed by the design, not implemented)."""
        method = self.recipes[key].method
        assert method is not None and method.needs_features
        models = [self.models.trained_model(t, seed).eval() for t in self.recipes[key].teachers]
        self.log(f"[{key}] {method.method}: teacher features are computed on every batch (not cached)")

        def loss(idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, student: Features, epoch: int) -> torch.Tensor:
            with torch.no_grad(), self.runtime.autocast():
                teachers = [t.forward_features(x) for t in models]
            return method.feature_loss(student, [float_features(t) for t in teachers], y, epoch)

        return FeatureObjective(loss)
