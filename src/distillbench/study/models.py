"""The study's models on its device: built with a run's own initialisation, loaded from a released
checkpoint (a ``loaded`` recipe: ``weights.<model key>: PATH``), or loaded once trained."""

from __future__ import annotations

from pathlib import Path

import torch

from distillbench.models import build_model
from distillbench.models.backbone import ImageShape
from distillbench.models.classifier import Classifier
from distillbench.models.weights import load_model_checkpoint
from distillbench.study.plan import RunKey
from distillbench.study.recipe import Recipes
from distillbench.study.store import RunStore
from distillbench.training.randomness import derive_seed, global_rng
from distillbench.training.runtime import Runtime


class StudyModels:
    """Builds models for new runs and keeps trained ones (teachers) in memory, keyed by (model, seed)."""

    def __init__(self, recipes: Recipes, runtime: Runtime, store: RunStore, image_shape: ImageShape, num_classes: int):
        self.recipes, self.runtime, self.store = recipes, runtime, store
        self.image_shape, self.num_classes = image_shape, num_classes
        self.trained: dict[RunKey, Classifier] = {}
        self.checkpoints: dict[RunKey, str] = {}  # sha256 of the checkpoint each trained model is

    def _build(self, key: str, weights: str | None) -> Classifier:
        model = build_model(self.recipes[key].spec, weights, self.image_shape, self.num_classes)
        memory_format = torch.channels_last if self.runtime.channels_last else torch.contiguous_format
        return model.to(self.runtime.device, memory_format=memory_format)

    def initial(self, key: str, seed: int) -> Classifier:
        """``key``'s model as its run with ``seed`` starts: the run's own initialisation stream, the
        configured backbone weights."""
        with global_rng(derive_seed(seed, "init"), self.runtime.device):
            return self._build(key, self.recipes[key].build_weights)

    def untrained(self, key: str) -> Classifier:
        """``key``'s architecture with nothing loaded (its weights whatever the build draws, torch's
        global generator left as it was): for its shapes only."""
        with global_rng(None, self.runtime.device):
            return self._build(key, "none")

    def released(self, key: str) -> tuple[Classifier, str]:
        """A loaded model (``recipes[key].loaded``) with its checkpoint's weights, and the sha256 of
        the file they were read from. The same for every seed: nothing is drawn."""
        recipe = self.recipes[key]
        with global_rng(None, self.runtime.device):  # every weight comes from the checkpoint
            model = self._build(key, recipe.build_weights)
        digest = load_model_checkpoint(model, f"weights.{key}", Path(recipe.own_weights or ""))
        return model, digest

    def check_weights(self) -> None:
        """Stop with the one-paragraph error of the first model whose own weights (``weights.<key>``)
        do not load: a released checkpoint that does not fit, a timm model's missing or unfitting file,
        or timm's pretrained weights that cannot be downloaded (downloaded now if not cached yet).
        For the study's preflight: hours later, when the run starts, is too late. Nothing is kept."""
        for key, recipe in self.recipes.items():
            if recipe.loaded:
                self.released(key)
            elif recipe.own_weights not in (None, "none"):
                with global_rng(None, self.runtime.device):
                    build_model(recipe.spec, recipe.build_weights, self.image_shape, self.num_classes)

    def keep(self, key: str, seed: int, model: Classifier, checkpoint_sha256: str) -> None:
        """A model just trained (saved as the checkpoint with ``checkpoint_sha256``): its students of
        the same seed use it without reading it back."""
        self.trained[(key, seed)] = model.eval()
        self.checkpoints[(key, seed)] = checkpoint_sha256

    def trained_model(self, key: str, seed: int) -> Classifier:
        """A finished run, from memory or its ``model.pt`` (verified against its run.json)."""
        if (key, seed) not in self.trained:
            model = self.untrained(key)  # every weight comes from model.pt
            state, digest = self.store.load_weights(key, seed, self.runtime.device)
            model.load_state_dict(state)
            self.keep(key, seed, model, digest)
        return self.trained[(key, seed)]

    def checkpoint_sha256(self, key: str, seed: int) -> str:
        """The sha256 of the checkpoint that ``trained_model(key, seed)`` is: what a student records
        of the teacher it actually distilled."""
        self.trained_model(key, seed)
        return self.checkpoints[(key, seed)]

    def forget_seed(self, seed: int) -> None:
        """Drop a seed's models once its runs are on disk: memory stays flat over many seeds."""
        for run_key in [k for k in self.trained if k[1] == seed]:
            del self.trained[run_key], self.checkpoints[run_key]

    def forget_all(self) -> None:
        self.trained.clear()
        self.checkpoints.clear()
