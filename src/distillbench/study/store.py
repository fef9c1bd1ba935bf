"""The only code that reads or writes a study directory's runs and its plan.

A run directory holds a finished run once its ``predictions.npz`` exists: ``RunStore.save`` writes
it last, every file atomically, and ``RunStore.start`` removes it before a run retrains. Its
``run.json`` holds the sha256 of every other file and of itself (``record_sha256``, over the rest of
the record), so a finished run *verifies* only if no file was damaged, truncated or edited since it
was saved. A run that does not verify is stale, never a result: ``report`` lists it, ``run``
retrains it. ``report`` verifies the files a result is made of (run.json, history.csv,
predictions.npz); ``run`` verifies ``model.pt`` (and a feature method's ``distill_parts.pt``) too, since it loads checkpoints (teachers,
efficiency) and a study's runs include them. A checkpoint is also verified whenever it is loaded.

A verified run is a result of *this* study only if its identity matches: its fingerprint equals the
one the study's config gives that run, and, for a student, the checkpoints it distilled are still its
teachers' checkpoints (a teacher retrained to other weights makes its students stale even if no
setting changed). ``run`` and ``report`` both judge runs here, so neither can show a stale run as a
result.

``plan.json`` records, when a study starts, every run it asks for with its fingerprint and teachers,
and the sha256 of ``config.yaml``: ``report`` judges runs without loading the data or the weights.

A study of a sweep keeps its runs in the sweep's shared *pool* instead of its own ``runs/``: there a
run's directory is named by its identity (``<model>/seed-<s>-<fingerprint>``), so the points of a grid
that need the same run (a teacher, which does not depend on ``kd.*``) find it trained once. plan.json
names the pool, so ``report`` works on such a study too.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillbench.atomic import file_sha256, write_bytes, write_json
from distillbench.config import MAX_SEED_VALUE, check_name
from distillbench.errors import UserError, os_error
from distillbench.study.layout import ModelRunPaths, RunLayout
from distillbench.study.plan import RunKey, RunSpec

PLAN_FORMAT = 1

# What every reader of a finished run.json relies on; a record without them is from an older
# distillbench (or damaged) and the run is stale.
RECORD_FIELDS = (
    "model",
    "seed",
    "fingerprint",
    "teachers",
    "teacher_checkpoints",
    "arch",
    "weights",
    "params",
    "trainable_params",
    "epochs_trained",
    "best_epoch",
    "train_seconds",
    "checkpoint_sha256",
    "history_sha256",
    "predictions_sha256",
    "record_sha256",
)


@dataclass
class SavedRun:
    """One finished (model, seed) run as it is on disk."""

    y_true: np.ndarray
    logits: np.ndarray
    class_names: list[str]
    record: dict[str, Any]
    history: list[dict[str, float]]

    @property
    def correct(self) -> np.ndarray:
        return self.logits.argmax(1) == self.y_true


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_checkpoint(state_dict: dict[str, torch.Tensor]) -> bytes:
    """The bytes of ``model.pt``: ``torch.save`` of the state_dict (tensors only, loads with weights_only)."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


def _history_csv(history: list[dict[str, float]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(history[0]) if history else ["epoch"])  # a released model: none
    writer.writeheader()
    writer.writerows(history)
    return text.getvalue()


def _read_history(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(handle)]


def _record_digest(record: dict[str, Any]) -> str:
    """sha256 of a record without its own ``record_sha256``, as canonical JSON."""
    content = {key: value for key, value in record.items() if key != "record_sha256"}
    return sha256_hex(json.dumps(content, sort_keys=True, allow_nan=False).encode("utf-8"))


def _sealed(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "record_sha256": _record_digest(record)}


@dataclass(frozen=True)
class Verified:
    """What verifying a run directory found: its record if the run is finished and every file checks
    out; else why not (``problem``; None when the run simply has not finished)."""

    record: dict[str, Any] | None = None
    problem: str | None = None


def _seed(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED_VALUE:
        raise ValueError(f"a run's seed is {value!r}, not an integer from 0 to {MAX_SEED_VALUE}")
    return value


def sweep_pool(point: Path, pool: Any) -> Path | None:
    """The pool of runs a sweep's point directory names in its plan.json, if it is where a sweep keeps
    it (``../../runs`` beside the sweep's ``sweep.yaml``); None for anything else (a path elsewhere)."""
    sweep = Path(point).parent.parent
    expected = os.path.normpath(sweep / "runs")
    if not isinstance(pool, str) or os.path.normpath(Path(point) / pool) != expected:
        return None
    return Path(expected) if (sweep / "sweep.yaml").is_file() else None


def sweep_of_point(directory: Path) -> Path | None:
    """The sweep directory whose point ``directory`` is (its plan.json names the sweep's pool, where a
    sweep keeps it), or None."""
    try:
        plan = json.loads((Path(directory) / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    pool = sweep_pool(directory, plan.get("pool")) if isinstance(plan, dict) else None
    return pool.parent if pool is not None else None


def _unlink(path: Path, doing: str = "remove") -> None:
    """Remove ``path`` if it exists (a ``UserError`` naming it and what was ``doing`` if it cannot be)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise os_error(exc, path, doing) from None


@dataclass(frozen=True)
class RunCheckpoints:
    """What a run saves of its weights (each ``encode_checkpoint``'s bytes): the model's (model.pt),
    and a feature method's learned parts (distill_parts.pt; None: none, and no such file)."""

    model: bytes
    distill_parts: bytes | None = None


RunFiles = dict[str, bytes]  # a finished run's files by name, as they travel to and from remote workers


class RunStore:
    """A study directory (``layout``): its runs, their state, and its plan. With ``pool``, the runs
    live in that shared directory, named by the fingerprints of the study's plan (``expect``)."""

    def __init__(self, root: Path, pool: Path | None = None, fingerprints: dict[RunKey, str] | None = None):
        self.layout = RunLayout(Path(root))
        self.pool = Path(pool) if pool is not None else None
        self.fingerprints: dict[RunKey, str] = dict(fingerprints or {})

    def expect(self, runs: list[RunSpec]) -> None:
        """The study's runs and their identities: where a pooled store finds them."""
        self.fingerprints.update({run.key: run.fingerprint for run in runs})

    def paths(self, key: str, seed: int) -> ModelRunPaths:
        """The directory of model ``key``'s run with ``seed``."""
        if self.pool is None:
            return self.layout.run(key, seed)
        fingerprint = self.fingerprints.get((key, seed))
        if fingerprint is None:
            raise ValueError(f"{key} seed {seed} is not a run of this study's plan")
        return ModelRunPaths(self.pool / key / f"seed-{seed}-{fingerprint[:16]}")

    # ---- writing a run -------------------------------------------------------------------------
    def start(self, key: str, seed: int) -> None:
        """From now on the run is unfinished, whatever was there before."""
        _unlink(self.paths(key, seed).predictions, "remove the old predictions of")

    def export_run(self, key: str, seed: int) -> RunFiles:
        """A finished run's files, to send to a worker that has no access to this directory."""
        try:
            paths = self.paths(key, seed)
            return {
                path.name: path.read_bytes() for path in paths.files if path != paths.distill_parts or path.exists()
            }
        except OSError as exc:
            raise os_error(exc, doing="read a finished run's file") from None

    def import_run(self, key: str, seed: int, files: RunFiles) -> None:
        """Write a run trained elsewhere (``export_run``'s files), atomically, predictions last."""
        self.start(key, seed)
        paths = self.paths(key, seed)
        for path in paths.files:
            if path == paths.distill_parts and path.name not in files:  # none with this run: no older one lingers
                _unlink(path)
            else:
                write_bytes(path, files[path.name])

    def save(
        self,
        key: str,
        seed: int,
        *,
        checkpoints: RunCheckpoints,
        history: list[dict[str, float]],
        record: dict[str, Any],
        test_logits: np.ndarray,
        test_labels: np.ndarray,
        class_names: tuple[str, ...],
    ) -> None:
        """Write a finished run: its ``checkpoints``, history, ``run.json`` (``record`` plus every
        file's sha256), and the test predictions last."""
        checkpoint, distill_parts = checkpoints.model, checkpoints.distill_parts
        paths = self.paths(key, seed)
        history_bytes = _history_csv(history).encode("utf-8")
        buffer = io.BytesIO()
        np.savez(
            buffer,
            y_true=test_labels,
            y_pred=test_logits.argmax(1),
            logits=test_logits,
            class_names=np.array(class_names),
        )
        predictions = buffer.getvalue()
        checksums = {
            "checkpoint_sha256": sha256_hex(checkpoint),
            "history_sha256": sha256_hex(history_bytes),
            "predictions_sha256": sha256_hex(predictions),
        }
        if distill_parts is not None:
            checksums["distill_parts_sha256"] = sha256_hex(distill_parts)
        write_bytes(paths.model, checkpoint)
        if distill_parts is not None:
            write_bytes(paths.distill_parts, distill_parts)
        else:
            _unlink(paths.distill_parts)
        write_bytes(paths.history, history_bytes)
        write_json(paths.record, _sealed({**record, **checksums}))
        write_bytes(paths.predictions, predictions)  # last: its presence means finished

    def update_record(self, key: str, seed: int, **changes: Any) -> None:
        """Add ``changes`` to a finished run's ``run.json`` (atomically; its identity unchanged)."""
        record = self.record(key, seed)
        if not record:
            raise ValueError(f"{key} seed {seed} has no finished run to update")
        write_json(self.paths(key, seed).record, _sealed({**record, **changes}))

    # ---- reading runs --------------------------------------------------------------------------
    def verify(self, key: str, seed: int, checkpoint: bool = False) -> Verified:
        """Whether the run of ``key`` with ``seed`` finished and its files are what it saved: run.json
        a complete record matching its own checksum, history.csv and predictions.npz (and, with
        ``checkpoint``, model.pt) matching theirs."""
        paths = self.paths(key, seed)
        if not paths.predictions.exists():
            return Verified()
        try:
            record = json.loads(paths.record.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            return Verified(problem=f"run.json is unreadable ({type(exc).__name__})")
        if not isinstance(record, dict):
            return Verified(problem=f"run.json holds a {type(record).__name__}, not a record")
        missing = [name for name in RECORD_FIELDS if name not in record]
        if missing:
            return Verified(problem=f"run.json lacks {', '.join(missing)} (damaged, or from an older distillbench)")
        try:
            matches = record["record_sha256"] == _record_digest(record)
        except (ValueError, RecursionError):  # NaN or Infinity, which no record of ours holds
            matches = False
        if not matches:
            return Verified(problem="run.json does not match its checksum (edited or damaged)")
        files = [(paths.history, "history_sha256"), (paths.predictions, "predictions_sha256")]
        if checkpoint:
            files.append((paths.model, "checkpoint_sha256"))
            if "distill_parts_sha256" in record:
                files.append((paths.distill_parts, "distill_parts_sha256"))
        for path, field in files:
            try:
                digest = file_sha256(path)
            except OSError as exc:
                return Verified(problem=f"{path.name} is unreadable ({exc.strerror or type(exc).__name__})")
            if digest != record[field]:
                return Verified(problem=f"{path.name} does not match its checksum (damaged, truncated or replaced)")
        return Verified(record=record)

    def record(self, key: str, seed: int) -> dict[str, Any] | None:
        """A finished run's ``run.json`` if the run verifies; None otherwise."""
        return self.verify(key, seed).record

    def history(self, key: str, seed: int) -> list[dict[str, float]]:
        """A finished run's per-epoch history (``history.csv``)."""
        return _read_history(self.paths(key, seed).history)

    def kept_val_accuracy(self, key: str, seed: int) -> float | None:
        """A finished run's validation accuracy with the weights it kept (its best epoch's, or a
        released model's own); None without a validation split."""
        record = self.record(key, seed)
        history = self.history(key, seed)
        if not history:
            return record.get("val_accuracy")
        kept = next(row for row in history if row["epoch"] == record["best_epoch"])
        return kept.get("val_accuracy")

    def test_accuracy(self, key: str, seed: int) -> float:
        """A finished run's accuracy on the test set (reads its predictions)."""
        return float(self.load(key, seed).correct.mean())

    def checkpoint_sha256(self, key: str, seed: int) -> str:
        return self.record(key, seed)["checkpoint_sha256"]

    def state(self, run: RunSpec, checkpoint: bool = False) -> tuple[str, str | None]:
        """("finished", None), ("missing", None) or ("stale", why) for a planned run; ``checkpoint``:
        its model.pt must verify too (``run`` asks so; ``report`` needs only the results)."""
        verified = self.verify(run.model, run.seed, checkpoint)
        if verified.problem is not None:
            return "stale", f"its files do not verify: {verified.problem}"
        record = verified.record
        if record is None:
            return "missing", None
        if record["fingerprint"] != run.fingerprint:
            return "stale", "trained with a different configuration"
        distilled = record["teacher_checkpoints"] if isinstance(record["teacher_checkpoints"], dict) else {}
        for teacher in run.teachers:
            current = self.record(teacher, run.seed)
            if current is None:
                return "stale", f"its teacher {teacher} (seed {run.seed}) is not on disk or does not verify"
            if distilled.get(teacher) != current["checkpoint_sha256"]:
                return "stale", f"its teacher {teacher} (seed {run.seed}) was retrained after it"
        return "finished", None

    def load_weights(self, key: str, seed: int, device: torch.device) -> tuple[dict[str, torch.Tensor], str]:
        """A finished run's ``model.pt``, verified against the sha256 in its run.json, and that sha256;
        or a one-paragraph error saying how to retrain it."""
        path = self.paths(key, seed).model
        retrain = f"run the study again: `distillbench run` retrains {key} (seed {seed}) and what depends on it."
        record = self.record(key, seed)
        if record is None:
            raise UserError(f"The run of {key} (seed {seed}) in {path.parent} is unfinished or damaged; {retrain}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserError(
                f"Checkpoint {path} could not be read ({exc.strerror or type(exc).__name__}); {retrain}"
            ) from None
        digest = sha256_hex(data)
        if digest != record["checkpoint_sha256"]:
            raise UserError(f"Checkpoint {path} does not match the sha256 in its run.json (damaged); {retrain}")
        try:
            return torch.load(io.BytesIO(data), map_location=device, weights_only=True), digest
        except Exception as exc:  # a file that matches its checksum but not torch's format: written elsewhere
            raise UserError(f"Checkpoint {path} could not be loaded ({type(exc).__name__}); {retrain}") from None

    def load(self, key: str, seed: int) -> SavedRun | None:
        """The saved run of ``key`` with ``seed``; None if it has not finished or does not verify."""
        paths = self.paths(key, seed)
        record = self.record(key, seed)
        if record is None:
            return None
        try:
            with np.load(paths.predictions, allow_pickle=False) as saved:
                y_true, logits = saved["y_true"], saved["logits"]
                class_names = [str(n) for n in saved["class_names"]]
            history = _read_history(paths.history)
        except Exception as exc:  # verified files that still do not parse: written by something else
            raise UserError(
                f"The saved run of {key} (seed {seed}) in {paths.root} is unreadable ({type(exc).__name__}: "
                f"{exc}); delete that directory and run the study again to retrain it."
            ) from None
        return SavedRun(y_true, logits, class_names, record, history)

    # ---- the plan ------------------------------------------------------------------------------
    def write_plan(self, config_text: str, runs: list[RunSpec]) -> None:
        self.expect(runs)
        pool = {"pool": os.path.relpath(self.pool, self.layout.root)} if self.pool is not None else {}
        write_json(
            self.layout.plan,
            {
                "format": PLAN_FORMAT,
                "config_sha256": sha256_hex(config_text.encode("utf-8")),
                **pool,
                "runs": [
                    {
                        "model": r.model,
                        "seed": r.seed,
                        "fingerprint": r.fingerprint,
                        "teachers": list(r.teachers),
                        "arch": r.arch,
                    }
                    for r in runs
                ],
            },
        )

    def read_plan(self) -> list[RunSpec]:
        """The runs the study asked for when it last started; checked against config.yaml."""
        layout = self.layout
        again = f"Run `distillbench run --config {layout.config} --out {layout.root}` to bring it up to date."
        try:
            plan = json.loads(layout.plan.read_text())
            config_text = layout.config.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(
                f"{layout.root} has no plan.json: it was written by an older distillbench, or its run stopped "
                f"before training began. {again}"
            ) from None
        except (OSError, ValueError) as exc:
            raise UserError(f"{layout.plan} is unreadable ({type(exc).__name__}: {exc}). {again}") from None
        if not isinstance(plan, dict):
            raise UserError(f"{layout.plan} holds a {type(plan).__name__}, not a plan (damaged). {again}")
        if plan.get("format") != PLAN_FORMAT:
            raise UserError(f"{layout.plan} has format {plan.get('format')!r}, not {PLAN_FORMAT}. {again}")
        if plan.get("config_sha256") != sha256_hex(config_text.encode("utf-8")):
            raise UserError(
                f"{layout.config} is not the config that {layout.plan} was made from (it was edited, or a run "
                f"stopped while starting). {again}"
            )
        try:
            runs = [
                RunSpec(
                    check_name(r["model"], "a run's model"),
                    _seed(r["seed"]),
                    check_name(r["fingerprint"], "a run's fingerprint"),
                    tuple(check_name(t, "a teacher") for t in r["teachers"]),
                    r.get("arch"),
                )
                for r in plan["runs"]
            ]
            pool = plan.get("pool")
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise UserError(f"{layout.plan} is damaged ({type(exc).__name__}: {exc}). {again}") from None
        if pool is not None:
            self.pool = sweep_pool(layout.root, pool)
            if self.pool is None:
                raise UserError(
                    f"{layout.plan} names {pool!r} as its sweep's pool of runs, but a sweep's point keeps its runs in "
                    f"../../runs of a directory holding sweep.yaml. {again}"
                )
        self.expect(runs)
        return runs
