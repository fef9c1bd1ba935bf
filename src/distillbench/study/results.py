"""``results.json`` from what the runs saved: every number recomputed from the predictions."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from distillbench.errors import UserError
from distillbench.evaluation.metrics import classification_metrics
from distillbench.study.layout import RunLayout

RESERVED_KEYS = ("study", "teachers")  # top-level keys of results.json that are not model keys


def _read_history(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(handle)]


def finished_models(root: Path, order: list[str]) -> list[str]:
    layout = RunLayout(root)
    return [key for key in order if layout.run(key).predictions.exists()]


def collect_results(root: Path, order: list[str]) -> dict[str, Any]:
    layout = RunLayout(root)
    config = yaml.safe_load(layout.config.read_text()) if layout.config.exists() else {}
    results: dict[str, Any] = {}
    logits: dict[str, np.ndarray] = {}
    records: dict[str, dict[str, Any]] = {}
    class_names: list[str] = []
    y_true = None
    for key in finished_models(root, order):
        paths = layout.run(key)
        try:
            with np.load(paths.predictions, allow_pickle=False) as saved:
                y_true, y_pred, logits[key] = saved["y_true"], saved["y_pred"], saved["logits"]
                class_names = [str(n) for n in saved["class_names"]]
            record = json.loads(paths.record.read_text())
            history = _read_history(paths.history)
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(
                f"The saved run of {key} in {paths.root} is unreadable ({type(exc).__name__}: {exc}); "
                f"delete that directory and run the study again to retrain {key}."
            ) from None
        records[key] = record
        results[key] = {
            **classification_metrics(y_true, y_pred, class_names),
            "history": history,
            **{k: record[k] for k in ("epochs_trained", "best_epoch", "train_seconds", "params", "trainable_params")},
            "title": record.get("title", key),
            "arch": record["arch"],
            "teachers": record["teachers"],
            "weights": record["weights"],
        }
    ensembles: list[tuple[str, ...]] = []
    for record in records.values():
        group = tuple(record["teachers"])
        if len(group) > 1 and group not in ensembles and all(t in logits for t in group):
            ensembles.append(group)
    teachers = {}
    for group in ensembles:
        mean_logits = np.mean([logits[t] for t in group], axis=0)
        name = "ensemble" if len(ensembles) == 1 else "ensemble(" + "+".join(group) + ")"
        teachers[name] = {
            "members": list(group),
            "test_accuracy": float((mean_logits.argmax(1) == y_true).mean()),
        }
    first = next(iter(records.values()), {})
    study = {
        "name": config.get("name"),
        "seed": config.get("seed"),
        "models": order,
        "finished": list(records),
        "class_names": class_names,
        "data_source": first.get("data_source"),
        "synthetic_data": bool(first.get("synthetic_data")),
        "device": first.get("device"),
        "weights": {r["arch"]: r["weights"] for r in records.values() if r.get("weights")},
        "kd": config.get("kd"),
        "train": config.get("train"),
    }
    return {"study": study, **results, "teachers": teachers}


def model_keys(results: dict[str, Any]) -> list[str]:
    return [k for k in results if k not in RESERVED_KEYS]
