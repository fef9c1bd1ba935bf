"""Train one run of the plan, or a batched group of runs, and save each through the store: the
units an executor schedules.

A run of a *loaded* model (``weights.<model key>: PATH``, a released checkpoint) trains nothing: its
checkpoint is loaded, evaluated on the test (and validation) split and saved like a trained run, with
an empty history, ``epochs_trained`` 0, ``selected: released`` and ``weights`` saying ``loaded from
PATH (sha256 ...), not trained`` (``loaded_from`` holds the path and hash; ``val_loss`` and
``val_accuracy`` its validation numbers). It is never part of a batched group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from distillbench.config import StudyConfig
from distillbench.data import StudyData
from distillbench.errors import UserError
from distillbench.evaluation.efficiency import model_costs, structure_key
from distillbench.models import BACKBONES
from distillbench.models.classifier import Classifier, count_parameters
from distillbench.models.weights import describe_loaded, describe_weights
from distillbench.study.inputs import RunInputs
from distillbench.study.models import StudyModels
from distillbench.study.plan import RunSpec
from distillbench.study.recipe import ModelRecipe, Recipes, model_recipes
from distillbench.study.resolve import check_names
from distillbench.study.store import RunCheckpoints, RunStore, encode_checkpoint, sha256_hex
from distillbench.training.cache import TensorCache
from distillbench.training.grouped import NotGroupable
from distillbench.training.loop import (
    EpochSplits,
    FeatureObjective,
    FitResult,
    FitSettings,
    GroupMember,
    Objective,
    evaluate,
    fit,
    fit_group,
    learned_parts,
    predict,
)
from distillbench.training.runtime import Runtime


def _say(line: str) -> None:
    print(line, flush=True)


@dataclass
class _Job:
    """A run ready to train: its model, the module that trains, per split what it sees, its loss."""

    run: RunSpec
    model: Classifier
    module: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    objective: Objective | FeatureObjective | None  # None: a loaded model, which trains on nothing
    prepare_seconds: float
    released: dict[str, Any] | None = None  # a loaded model's record entries (``_evaluate_released``)


def _teachers_online(job: _Job) -> dict[str, bool]:
    """A feature method's run: whether its teachers' features ran on every batch (known once its
    objective was built: over the memory budget they do even without augmentation); else nothing."""
    return {"teachers_online": job.objective.teachers_online} if isinstance(job.objective, FeatureObjective) else {}


def _encoded_parts(job: _Job) -> bytes | None:
    """distill_parts.pt's bytes: the run's learned parts' state on the CPU (None: no such parts)."""
    parts = learned_parts(job.objective)
    return None if parts is None else encode_checkpoint({k: v.cpu() for k, v in parts.state_dict().items()})


def _describe_parts(parts: torch.nn.Module | None) -> dict[str, Any] | None:
    """run.json's entry for learned parts: their file and sizes (None: no such parts)."""
    if parts is None:
        return None
    return {
        "file": "distill_parts.pt",
        "parameters": sum(p.numel() for p in parts.parameters()),
        "saved_values": sum(v.numel() for v in parts.state_dict().values()),  # parameters and saved buffers
    }


class RunExecutor:
    """Trains a run whose teachers are finished, evaluates it on the test split, and saves it."""

    def __init__(
        self,
        cfg: StudyConfig,
        data: StudyData,
        runtime: Runtime,
        store: RunStore,
        models: StudyModels,
        inputs: RunInputs,
        say_test: bool = True,
    ):
        self.cfg, self.data, self.runtime = cfg, data, runtime
        self.store, self.models, self.inputs = store, models, inputs
        self.recipes = inputs.recipes
        self.say_test = say_test  # False in a sweep: the log shows validation accuracy

    @classmethod
    def build(
        cls,
        cfg: StudyConfig,
        data: StudyData,
        store: RunStore,
        runtime: Runtime | None = None,
        cache: TensorCache | None = None,
        recipes: Recipes | None = None,
        say_test: bool | None = None,
    ) -> RunExecutor:
        """The composition root of what trains the study's runs, in this process, a worker process or
        a Ray task: the study's plugins imported, its recipes resolved, its models and inputs, with
        ``runtime`` (the study's, resolved once where the plan was made; by default resolved here),
        ``cache`` (by default ``perf.cache_dir``'s) and ``recipes`` (by default resolved here). A sweep's runs (a store with a pool, or
        ``say_test`` False) log their validation accuracy, not their test accuracy."""
        try:
            check_names(cfg, "the study's config")  # imports the study's plugins first
        except UserError as exc:  # passed where the study started: a name registered only there
            raise UserError(
                f"{exc} The study's own process knew these names: a worker process or Ray task imports only the "
                "study's plugins, so register your own names in a plugin module (plugins: or --plugin, see the "
                "README's Extending), not in the script or notebook that starts the study."
            ) from None
        perf = cfg.perf.effective()
        runtime = runtime if runtime is not None else Runtime.resolve(perf, cfg.device)
        cache = cache if cache is not None else TensorCache.for_study(perf)
        recipes = recipes if recipes is not None else model_recipes(cfg)
        models = StudyModels(recipes, runtime, store, data.image_shape, len(data.class_names))
        inputs = RunInputs(recipes, perf, data, runtime, models, cache)
        say_test = store.pool is None if say_test is None else say_test
        return cls(cfg, data, runtime, store, models, inputs, say_test)

    def train(self, run: RunSpec) -> None:
        """Train ``run`` alone and save it, with the runtime's thread count whatever this process uses."""
        with self.runtime.thread_scope():
            self._train(run)

    def _train(self, run: RunSpec) -> None:
        if self.recipes[run.model].loaded:
            return self._evaluate_released(run)
        job = self._prepare(run)
        result = fit(
            job.module,
            (job.inputs["train"], self.data.train.labels),
            self._epoch_splits(job),
            self._fit_settings(run),
            seed=run.seed,
            runtime=self.runtime,
            objective=job.objective,
            name=run.model,
        )
        self._save(job, result, group=None)

    def train_group(self, runs: list[RunSpec]) -> None:
        """Train ``runs`` (one architecture and optimiser setting, the same inputs) side by side as one
        batched model, saving each as soon as it stops; runs that cannot be grouped train alone."""
        with self.runtime.thread_scope():
            self._train_group(runs)

    def _train_group(self, runs: list[RunSpec]) -> None:
        for run in [run for run in runs if self.recipes[run.model].loaded]:  # nothing to train: never grouped
            self._evaluate_released(run)
        runs = [run for run in runs if not self.recipes[run.model].loaded]
        if not runs:
            return None
        if len(runs) == 1:
            return self._train(runs[0])
        jobs = [self._prepare(run) for run in runs]
        if any(job.inputs["train"] is not jobs[0].inputs["train"] for job in jobs):
            _say("these runs train on different inputs; training them one by one")
            return self._train_alone(jobs)
        members = [
            GroupMember(job.module, job.run.seed, job.objective, f"{job.run.model} seed {job.run.seed}") for job in jobs
        ]
        names = [member.name for member in members]
        _say(f"[group] training {len(runs)} runs as one batched model: {', '.join(names)}")
        try:
            fit_group(
                members,
                (jobs[0].inputs["train"], self.data.train.labels),
                self._epoch_splits(jobs[0]),
                self._fit_settings(runs[0]),
                runtime=self.runtime,
                on_done=lambda index, result: self._save(jobs[index], result, group=names),
            )
        except NotGroupable as exc:
            _say(f"[group] cannot be batched ({exc}); training the runs one by one")
            self._train_alone(jobs)

    def _train_alone(self, jobs: list[_Job]) -> None:
        for job in jobs:
            self._train(job.run)

    def _fit_settings(self, run: RunSpec) -> FitSettings:
        return self.recipes[run.model].fit_settings(self.runtime.fused_optimizer)

    def _epoch_splits(self, job: _Job) -> EpochSplits:
        """What a run is measured on after each epoch: the validation split (none with data.val_size
        0: the last epoch is kept), and the test split too with train.test_every_epoch (recorded in
        the history, never selecting the weights)."""
        val = (job.inputs["val"], self.data.val.labels) if self.data.val is not None else None
        every_epoch = self.recipes[job.run.model].train.test_every_epoch
        return EpochSplits(val, (job.inputs["test"], self.data.test.labels) if every_epoch else None)

    def _prepare(self, run: RunSpec) -> _Job:
        """The run's model with its initial weights, what it trains on, and its objective."""
        key, seed = run.model, run.seed
        self.store.start(key, seed)
        model = self.models.initial(key, seed)
        total, trainable = count_parameters(model)
        _say(
            f"[{key}] {self.recipes[key].arch}, {total:,} parameters ({trainable:,} trainable), device {self.runtime.device}"
        )
        started = time.perf_counter()
        inputs, module = self.inputs.training_inputs(key, model)
        objective = self.inputs.objective_for(key, seed, trains_on_images=module is model, student=model)
        return _Job(run, model, module, inputs, objective, time.perf_counter() - started)

    def _evaluate_released(self, run: RunSpec) -> None:
        """A loaded model's run: its checkpoint read (hashed as read), evaluated on validation (if the
        data have a validation split) and test, and saved with an empty history."""
        key, recipe = run.model, self.recipes[run.model]
        self.store.start(key, run.seed)
        started = time.perf_counter()
        model, digest = self.models.released(key)
        total, _ = count_parameters(model)
        path = Path(recipe.own_weights or "").expanduser()
        _say(f"[{key}] {recipe.arch}, {total:,} parameters, loaded from {path}: evaluated, not trained")
        inputs, module = self.inputs.inputs_for(key, model)
        val_loss = val_accuracy = None
        if self.data.val is not None and len(self.data.val.labels):
            val_loss, val_accuracy = evaluate(module, inputs["val"], self.data.val.labels, self.runtime)
        released = {
            "weights": describe_loaded(path, digest),
            "loaded_from": {"path": str(path), "sha256": digest},
            "selected": "released",  # no epoch was chosen: study.results' word for a released checkpoint
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
        }
        job = _Job(run, model, module, inputs, None, time.perf_counter() - started, released)
        self._save(job, FitResult(), group=None)

    def _save(self, job: _Job, result: FitResult, group: list[str] | None) -> None:
        """Evaluate a trained run on the test split and write it through the store."""
        key, seed = job.run.model, job.run.seed
        test_logits = predict(job.module, job.inputs["test"], self.runtime)
        checkpoint = encode_checkpoint(job.model.state_dict())
        self.models.keep(key, seed, job.model, sha256_hex(checkpoint))
        self.store.save(
            key,
            seed,
            checkpoints=RunCheckpoints(checkpoint, _encoded_parts(job)),
            history=result.history,
            record=self._record(job, result, group),
            test_logits=test_logits.numpy(),
            test_labels=self.data.test.labels.numpy(),
            class_names=self.data.class_names,
        )
        if job.released is not None:
            accuracy = float((test_logits.argmax(1) == self.data.test.labels).float().mean())
            val = job.released["val_accuracy"]
            val_text = f"{val:.4f}" if val is not None else "- (no validation split)"
            said = f"test accuracy {accuracy:.4f}" if self.say_test else f"validation accuracy {val_text}"
            _say(f"[{key}] seed {seed} evaluated (loaded, not trained): {said}")
        elif self.say_test:
            accuracy = float((test_logits.argmax(1) == self.data.test.labels).float().mean())
            _say(f"[{key}] seed {seed} done: test accuracy {accuracy:.4f}, {result.train_seconds:.1f}s")
        elif result.selected == "validation":  # a sweep's run: the test set is looked at once, for the chosen point
            accuracy = result.history[result.best_epoch - 1]["val_accuracy"]
            _say(f"[{key}] seed {seed} done: validation accuracy {accuracy:.4f}, {result.train_seconds:.1f}s")
        else:
            _say(f"[{key}] seed {seed} done (no validation split), {result.train_seconds:.1f}s")

    def _record(self, job: _Job, result: FitResult, group: list[str] | None) -> dict[str, Any]:
        """run.json's content (the store adds the files' checksums)."""
        run, recipe = job.run, self.recipes[job.run.model]
        total, trainable = count_parameters(job.model)
        return {
            "model": run.model,
            "fingerprint": run.fingerprint,
            # The checkpoints this student distilled (the files it read, verified): it is stale once a
            # teacher's checkpoint differs.
            "teacher_checkpoints": {t: self.models.checkpoint_sha256(t, run.seed) for t in run.teachers},
            "arch": recipe.arch,
            "title": recipe.title,
            "teachers": list(recipe.teachers),
            "weights": self._weights_line(recipe),
            "seed": run.seed,
            "data_source": self.data.source,
            "synthetic_data": self.data.synthetic,
            "superclasses": {k: list(v) for k, v in self.data.superclasses.items()} if self.data.superclasses else None,
            "device": str(self.runtime.device),
            "device_type": self.runtime.device.type,
            "precision": self.runtime.precision,
            "torch_threads": self.runtime.threads,  # bit-identical results need the same count
            "channels_last": self.runtime.channels_last,
            "fused_optimizer": self.runtime.fused_optimizer,
            # batched groups and feature methods' runs train eagerly
            "compile": self.runtime.compile and group is None and not isinstance(job.objective, FeatureObjective),
            "params": total,
            "trainable_params": trainable,
            # A feature method's learned parts (saved as distill_parts.pt): trained, not deployed.
            "distill_parts": _describe_parts(learned_parts(job.objective)),
            "epochs_trained": result.epochs_trained,
            "best_epoch": result.best_epoch,
            "selected": result.selected,  # best_epoch's weights: the best on validation, or the last epoch's
            "train_seconds": result.train_seconds,
            "prepare_seconds": job.prepare_seconds,
            "trained_with": group,  # the runs of its batched group (history seconds are the group's)
            "recipe": {**recipe.record(), **_teachers_online(job)},
            "efficiency": None,  # timed once training is over, alone on the CPU (Study.time_efficiency)
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(job.released or {}),  # a loaded model: where its weights came from, its validation numbers
        }

    @staticmethod
    def _weights_line(recipe: ModelRecipe) -> str | None:
        """Where a trained model's starting weights came from (a backbone's, a timm model's), for the report."""
        if recipe.arch == "timm" and recipe.own_weights is not None:
            from distillbench.models.timm_model import describe_timm_weights  # timm: an optional extra

            return describe_timm_weights(recipe.spec.timm_model or "", recipe.own_weights)
        return describe_weights(BACKBONES[recipe.arch], recipe.weights) if recipe.weights else None

    def efficiency_costs(self, run: RunSpec) -> tuple[dict[str, Any], Classifier]:
        """A finished run's counted efficiency (parameters, MACs, checkpoint size, and its structure's
        key: runs with one key share a timing) and its trained model, for the study to time."""
        model = self.models.trained_model(run.model, run.seed)
        checkpoint_bytes = self.store.paths(run.model, run.seed).model.stat().st_size
        costs = model_costs(model, self.data.image_shape, checkpoint_bytes)
        return {**costs, "timing_key": structure_key(model, self.data.image_shape)}, model
