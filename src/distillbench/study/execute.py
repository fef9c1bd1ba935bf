"""Train one run of the plan and save it through the store: the unit an executor schedules."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from distillbench.config import StudyConfig
from distillbench.data import StudyData
from distillbench.evaluation.efficiency import measure_efficiency
from distillbench.models import BACKBONES
from distillbench.models.classifier import Classifier, count_parameters
from distillbench.models.weights import describe_weights
from distillbench.study.inputs import RunInputs
from distillbench.study.models import StudyModels
from distillbench.study.plan import RunSpec, weights_source
from distillbench.study.store import RunStore, encode_checkpoint
from distillbench.training.loop import fit, predict
from distillbench.training.optim import build_optimizer
from distillbench.training.runtime import Runtime


def _say(line: str) -> None:
    print(line, flush=True)


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
    ):
        self.cfg, self.data, self.runtime = cfg, data, runtime
        self.store, self.models, self.inputs = store, models, inputs

    def train(self, run: RunSpec) -> None:
        key, seed = run.model, run.seed
        spec = self.cfg.zoo[key]
        self.store.start(key, seed)
        model = self.models.initial(key, seed)
        total, trainable = count_parameters(model)
        _say(f"[{key}] {spec.arch}, {total:,} parameters ({trainable:,} trainable), device {self.runtime.device}")
        prepare_start = time.perf_counter()
        inputs, module = self.inputs.training_inputs(key, model)
        objective = self.inputs.objective_for(key, seed, trains_on_images=module is model)
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
            augment=self.inputs.augmentation,
            name=key,
        )
        test_logits = predict(module, inputs["test"], self.runtime)
        self.models.keep(key, seed, model)
        checkpoint = encode_checkpoint(model.state_dict())
        self.store.save(
            key,
            seed,
            checkpoint=checkpoint,
            history=result.history,
            record={
                "model": key,
                "fingerprint": run.fingerprint,
                # What this student distilled: it is stale once a teacher's checkpoint differs.
                "teacher_checkpoints": {t: self.store.checkpoint_sha256(t, seed) for t in run.teachers},
                "arch": spec.arch,
                "title": spec.title or key,
                "teachers": spec.teachers,
                "weights": self._weights_line(spec.arch),
                "seed": seed,
                "data_source": self.data.source,
                "synthetic_data": self.data.synthetic,
                "device": str(self.runtime.device),
                "precision": self.runtime.precision,
                "channels_last": self.runtime.channels_last,
                "fused_optimizer": self.runtime.fused_optimizer,
                "compile": self.runtime.compile,
                "params": total,
                "trainable_params": trainable,
                "epochs_trained": result.epochs_trained,
                "best_epoch": result.best_epoch,
                "train_seconds": result.train_seconds,
                "prepare_seconds": prepare_seconds,
                "efficiency": self._efficiency(model, len(checkpoint)),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            test_logits=test_logits.numpy(),
            test_labels=splits["test"].labels.numpy(),
            class_names=self.data.class_names,
        )
        accuracy = float((test_logits.argmax(1) == splits["test"].labels).float().mean())
        _say(f"[{key}] seed {seed} done: test accuracy {accuracy:.4f}, {result.train_seconds:.1f}s")

    def _weights_line(self, arch: str) -> str | None:
        source = weights_source(self.cfg, arch)
        return describe_weights(BACKBONES[arch], source) if source is not None else None

    def _efficiency(self, model: Classifier, checkpoint_bytes: int) -> dict[str, Any] | None:
        if not self.cfg.evaluation.efficiency:
            return None
        return measure_efficiency(model, self.data.image_shape, checkpoint_bytes, self.cfg.evaluation.latency_repeats)
