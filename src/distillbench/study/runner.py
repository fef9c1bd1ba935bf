"""The study: train every model asked for (teachers first), evaluate, write the layout, resume."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillbench.atomic import write_bytes, write_json, write_text
from distillbench.config import ModelDef, StudyConfig, config_to_yaml, training_order
from distillbench.data import StudyData, load_study_data
from distillbench.data.augment import AUGMENTATIONS
from distillbench.errors import UserError
from distillbench.evaluation.efficiency import measure_efficiency
from distillbench.models import BACKBONES, build_model
from distillbench.models.classifier import Classifier, count_parameters
from distillbench.models.weights import IMAGENET_WEIGHTS, check_backbone_weights, describe_weights
from distillbench.study.environment import describe_environment
from distillbench.study.layout import RunLayout
from distillbench.study.resolve import check_names
from distillbench.study.store import PlannedRun, run_state, sha256_hex, write_plan
from distillbench.training.cache import TensorCache, cache_key, hash_module
from distillbench.training.distill import DISTILLERS
from distillbench.training.loop import Objective, cross_entropy_objective, fit, predict
from distillbench.training.optim import build_optimizer
from distillbench.training.randomness import derive_seed, global_rng
from distillbench.training.runtime import Runtime

# Part of every fingerprint: runs written by code whose results differ (before this version: bf16
# logits, frozen BatchNorm training on the cached path, randomness shared with earlier runs, no
# checkpoint hashes) are stale, and retrained rather than reused.
IDENTITY_VERSION = 2


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Study:
    """One study in one output directory. ``run()`` is safe to repeat: finished models are kept."""

    def __init__(self, cfg: StudyConfig, out: Path, data: StudyData | None = None):
        self.cfg = check_names(cfg)
        self.perf = cfg.perf.effective()
        self.layout = RunLayout(Path(out))
        if self.perf.threads:
            torch.set_num_threads(self.perf.threads)
        self.runtime = Runtime.resolve(self.perf, cfg.device)
        self.device, self.precision = self.runtime.device, self.runtime.precision
        self.data = data if data is not None else load_study_data(cfg.data)
        self.image_size = int(self.data.train.images.shape[-1])
        self.num_classes = len(self.data.class_names)
        self.cache = TensorCache(self.perf.cache_dir if self.perf.disk_cache else None)
        self.augmentation = AUGMENTATIONS[cfg.train.augment]
        # Keyed by (model key, seed): a KD student of seed s distils its teachers of seed s.
        self.trained: dict[tuple[str, int], Classifier] = {}
        self._fingerprints: dict[tuple[str, int], str] = {}
        self._model_hashes: dict[tuple[str, int], str] = {}
        self._file_hashes: dict[Path, str] = {}

    # ---- identity of a model's run, for resume -------------------------------------------------
    def _weights_source(self, arch: str) -> str | None:
        """``weights.<arch>`` for a pretrained backbone (the config requires one), else None."""
        return self.cfg.weights[arch] if arch in BACKBONES else None

    def _weights_identity(self, arch: str) -> str | None:
        source = self._weights_source(arch)
        if source is None:
            return None
        if source == "imagenet":
            return f"imagenet:{IMAGENET_WEIGHTS[arch].url}"
        if source == "none":
            return "none"
        path = Path(source).expanduser()
        if not path.is_file():
            return f"file:{path}"
        if path not in self._file_hashes:  # a VGG16 file is 0.5 GB: hashed once per study, not per run
            self._file_hashes[path] = _file_sha256(path)
        return f"file:{self._file_hashes[path]}"

    def fingerprint(self, key: str, seed: int) -> str:
        """Hash of everything a run's result depends on; a finished run is reused only if equal."""
        if (key, seed) not in self._fingerprints:
            spec = self.cfg.zoo[key]
            payload = {
                "identity": IDENTITY_VERSION,
                "spec": spec.model_dump(mode="json"),
                "train": self.cfg.train.model_dump(mode="json"),
                "seed": seed,
                "data": self.data.fingerprint,
                "precision": self.precision,
                "channels_last": self.perf.channels_last,
                "fused_optimizer": self.perf.fused_optimizer,
                "compile": self.perf.compile,
                "weights": self._weights_identity(spec.arch),
                "kd": self.cfg.kd.model_dump(mode="json") if spec.teachers else None,
                "teachers": [self.fingerprint(t, seed) for t in spec.teachers],
            }
            digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
            self._fingerprints[(key, seed)] = digest
        return self._fingerprints[(key, seed)]

    def planned_run(self, key: str, seed: int) -> PlannedRun:
        return PlannedRun(key, seed, self.fingerprint(key, seed), tuple(self.cfg.zoo[key].teachers))

    def run_state(self, key: str, seed: int) -> tuple[str, str | None]:
        """("finished" | "missing" | "stale", why): see ``study.store``."""
        return run_state(self.layout, self.planned_run(key, seed))

    # ---- models and their inputs ---------------------------------------------------------------
    def _build(self, spec: ModelDef, weights: str | None) -> Classifier:
        model = build_model(spec, weights, self.image_size, self.num_classes)
        memory_format = torch.channels_last if self.perf.channels_last else torch.contiguous_format
        return model.to(self.device, memory_format=memory_format)

    def load_trained(self, key: str, seed: int) -> Classifier:
        """A finished run of this study, from memory or its ``model.pt``."""
        if (key, seed) not in self.trained:
            with global_rng(None, self.device):  # every weight comes from model.pt: draw nothing
                model = self._build(self.cfg.zoo[key], "none")
            path = self.layout.run(key, seed).model
            try:
                model.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
            except (OSError, RuntimeError, ValueError) as exc:
                raise UserError(
                    f"Checkpoint {path} could not be loaded ({type(exc).__name__}); delete "
                    f"{path.parent} and run again to retrain {key} (seed {seed})."
                ) from None
            self.trained[(key, seed)] = model.eval()
        return self.trained[(key, seed)]

    def _infer(self, module: torch.nn.Module, inputs: torch.Tensor, desc: str | None = None) -> torch.Tensor:
        """``module`` over ``inputs`` with this study's device, numerics and inference batch."""
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
        model = self.load_trained(key, seed)

        def compute() -> torch.Tensor:
            inputs, module = self.inputs_for(key, model)
            return self._infer(module, inputs[split], f"{key} logits ({split})")

        if not self.perf.cache_teacher_logits:
            return compute()
        if (key, seed) not in self._model_hashes:
            self._model_hashes[(key, seed)] = hash_module(model)
        digest = cache_key(
            "logits", self._model_hashes[(key, seed)], self.data.fingerprint, split, self.runtime.numerics
        )
        return self.cache.get(digest, compute, what=f"{key} seed {seed} logits ({split})")

    def training_inputs(self, key: str, model: Classifier) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
        """``inputs_for``, except that with augmentation every model trains on images: an augmented
        batch is new each step, so no cached activation of it exists."""
        if self.augmentation is not None and self.perf.cache_features and not model.prefix_is_trivial:
            self._say_uncached(key, "frozen-layer activations", "frozen layers")
        return self.inputs_for(key, model, cached=self.augmentation is None)

    def _say_uncached(self, key: str, cached: str, runs: str) -> None:
        print(
            f"[{key}] train.augment={self.cfg.train.augment}: cached {cached} do not apply to augmented "
            f"batches, so the {runs} run on every batch",
            flush=True,
        )

    def objective_for(self, key: str, seed: int, trains_on_images: bool) -> Objective:
        """The training loss. A student's teachers come from cached logits, or run on every batch
        (the naive path, and any augmentation: teachers must see the batch the student sees)."""
        spec = self.cfg.zoo[key]
        if not spec.teachers:
            return cross_entropy_objective
        distill, kd = DISTILLERS[spec.distill], self.cfg.kd
        if self.perf.cache_teacher_logits and self.augmentation is None:
            soft = torch.stack([self.logits(t, seed, "train") for t in spec.teachers]).mean(0).to(self.device)
            return lambda idx, x, y, logits: distill(logits, soft[idx], y, kd)
        if self.perf.cache_teacher_logits:
            self._say_uncached(key, "teacher logits", "teachers")
        teachers = [self.load_trained(t, seed) for t in spec.teachers]
        # The student's batch is the teachers' input unless the student trains on cached activations.
        images = None if trains_on_images else self.data.train.images.to(self.device)

        def objective(idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            batch = x if images is None else images[idx]
            with torch.no_grad(), self.runtime.autocast():
                soft = torch.stack([t(batch).float() for t in teachers]).mean(0)
            return distill(logits, soft, y, kd)

        return objective

    # ---- one model -----------------------------------------------------------------------------
    def train_model(self, key: str, seed: int) -> None:
        spec = self.cfg.zoo[key]
        paths = self.layout.run(key, seed)
        paths.predictions.unlink(missing_ok=True)  # from now on this run is unfinished
        weights = self._weights_source(spec.arch)
        with global_rng(derive_seed(seed, "init"), self.device):
            model = self._build(spec, weights)
        total, trainable = count_parameters(model)
        print(f"[{key}] {spec.arch}, {total:,} parameters ({trainable:,} trainable), device {self.device}", flush=True)
        prepare_start = time.perf_counter()
        inputs, module = self.training_inputs(key, model)
        objective = self.objective_for(key, seed, trains_on_images=module is model)
        prepare_seconds = time.perf_counter() - prepare_start
        splits = self.data.splits
        result = fit(
            module,
            (inputs["train"], splits["train"].labels),
            (inputs["val"], splits["val"].labels),
            cfg=self.cfg.train,
            optimizer=lambda params: build_optimizer(params, spec, self.runtime.fused_optimizer),
            seed=seed,
            runtime=self.runtime,
            objective=objective,
            augment=self.augmentation,
            name=key,
        )
        test_logits = self._infer(module, inputs["test"])
        model.eval()
        self.trained[(key, seed)] = model

        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        checkpoint = buffer.getvalue()
        write_bytes(paths.model, checkpoint)
        write_text(paths.history, _history_csv(result.history))
        record = {
            "model": key,
            "fingerprint": self.fingerprint(key, seed),
            "checkpoint_sha256": sha256_hex(checkpoint),
            # What this student distilled: it is stale once a teacher's checkpoint differs.
            "teacher_checkpoints": {t: self._checkpoint_sha256(t, seed) for t in spec.teachers},
            "arch": spec.arch,
            "title": spec.title or key,
            "teachers": spec.teachers,
            "weights": describe_weights(spec.arch, weights) if weights is not None else None,
            "seed": seed,
            "data_source": self.data.source,
            "synthetic_data": self.data.synthetic,
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": self.perf.channels_last,
            "fused_optimizer": self.perf.fused_optimizer,
            "compile": self.perf.compile,
            "params": total,
            "trainable_params": trainable,
            "epochs_trained": result.epochs_trained,
            "best_epoch": result.best_epoch,
            "train_seconds": result.train_seconds,
            "prepare_seconds": prepare_seconds,
            "efficiency": self._efficiency(model, paths.model),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(paths.record, record)
        labels = splits["test"].labels.numpy()
        buffer = io.BytesIO()
        np.savez(
            buffer,
            y_true=labels,
            y_pred=test_logits.argmax(1).numpy(),
            logits=test_logits.numpy(),
            class_names=np.array(self.data.class_names),
        )
        write_bytes(paths.predictions, buffer.getvalue())  # last: its presence means finished
        accuracy = float((test_logits.argmax(1) == splits["test"].labels).float().mean())
        print(f"[{key}] seed {seed} done: test accuracy {accuracy:.4f}, {result.train_seconds:.1f}s", flush=True)

    def _checkpoint_sha256(self, key: str, seed: int) -> str:
        return json.loads(self.layout.run(key, seed).record.read_text())["checkpoint_sha256"]

    def _efficiency(self, model: Classifier, checkpoint: Path) -> dict[str, Any] | None:
        if not self.cfg.evaluation.efficiency:
            return None
        return measure_efficiency(model, self.image_size, checkpoint, self.cfg.evaluation.latency_repeats)

    # ---- the whole study -----------------------------------------------------------------------
    def preflight(self, order: list[str]) -> None:
        """Everything checkable before the first epoch, so a bad input stops the study at once rather
        than after hours of training: the output and cache directories are writable, and every
        backbone's weights exist (downloaded if need be) and fit their architecture. The data were
        read and validated when the study was made."""
        _check_writable(self.layout.root, "the output directory (--out)")
        if self.perf.disk_cache:
            _check_writable(self.cache.directory, "perf.cache_dir")
        for arch in dict.fromkeys(self.cfg.zoo[key].arch for key in order):
            source = self._weights_source(arch)
            if source is not None:
                check_backbone_weights(arch, source)

    def run(self) -> dict[str, Any]:
        from distillbench.study.results import finish_study

        order = training_order(self.cfg.zoo, self.cfg.models)
        self.preflight(order)
        config_text = config_to_yaml(self.cfg)
        seeds = self.cfg.seeds
        # plan.json first: report judges each run against the fingerprints of the config it names.
        write_plan(self.layout, config_text, [self.planned_run(key, seed) for seed in seeds for key in order])
        write_text(self.layout.config, config_text)
        write_json(self.layout.environment, describe_environment(self.device))
        if self.data.synthetic:
            print("NOTE: the data is GENERATED (distillbench synth-data), not CIFAR-10.", flush=True)
        started = time.perf_counter()
        # Seed by seed: after the first, a complete single-seed study is on disk.
        for seed_number, seed in enumerate(seeds, start=1):
            for number, key in enumerate(order, start=1):
                where = f"seed {seed} ({seed_number}/{len(seeds)}), model {number}/{len(order)}: {key}"
                state, why = self.run_state(key, seed)
                if state == "finished":
                    print(f"=== {where}: already finished with this config; skipping ===", flush=True)
                    continue
                print(f"=== {where}{f' (retraining: {why})' if why else ''} ===", flush=True)
                self.train_model(key, seed)
            for key in order:  # this seed's models are on disk; keep memory flat over many seeds
                self.trained.pop((key, seed), None)
        results = finish_study(self.layout.root)
        print(f"Study finished in {time.perf_counter() - started:.1f}s; report: {self.layout.report}", flush=True)
        return results


def _check_writable(directory: Path, what: str) -> None:
    """Create ``directory`` and write a file in it, or stop with what to do."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".distillbench-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"{what}: cannot write to {directory} ({exc.strerror or type(exc).__name__}). Choose a directory "
            "you can write to, or fix its permissions."
        ) from None


def _history_csv(history: list[dict[str, float]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    return text.getvalue()
