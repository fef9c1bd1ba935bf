"""The Python API, for notebooks and scripts: what ``distillbench run`` does, and typed access to a
study's results.

    import distillbench
    cfg = distillbench.load_config("configs/paper.yaml", overrides=["train.epochs=5"])
    results = distillbench.run_study(cfg, "results/paper")
    for key, model in results.models.items():
        print(model.title, model.method, model.test_accuracy, model.test_accuracy_ci95, model.test_top5_accuracy)

Errors are the command line's: a ``UserError`` whose message says what is wrong and what to do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillbench.config import StudyConfig
from distillbench.errors import UserError


@dataclass(frozen=True)
class ModelResult:
    """One model of a study, aggregated over its finished seeds (results.json's ``models.<key>``)."""

    key: str
    title: str
    arch: str
    teachers: list[str]
    test_accuracy: float  # mean over seeds, 0-1
    test_accuracy_std: float | None  # None with one finished seed
    test_accuracy_ci95: tuple[float, float] | None  # over seeds (Student-t interval); None with one seed
    test_top5_accuracy: float | None  # mean over seeds; None with 5 classes or fewer
    method: str | None  # a student's distillation method in words ("kd · mean_logits"); None without teachers
    seeds: list[int]
    calibration: dict[str, float | None]  # ece, nll, brier (means over seeds)
    per_class: dict[str, dict[str, float]]  # class -> precision, recall, f1, accuracy, support
    recipe: dict[str, Any]  # how it trained: optimizer, lr, schedule, epochs, batch size, augmentation...
    efficiency: dict[str, Any] | None  # params, MACs, latency, throughput (if measured)
    raw: dict[str, Any] = field(repr=False)  # the whole entry, per-seed results and histories included


@dataclass(frozen=True)
class StudyResults:
    """A study's results.json, typed where a notebook reads most; ``raw`` holds all of it
    (docs/results-schema.md)."""

    name: str
    schema_version: int
    models: dict[str, ModelResult]
    comparisons: list[dict[str, Any]]  # the paper's claims, tested (a, b, accuracy_diff, verdict, ...)
    distillation: list[dict[str, Any]] | None  # "which distillation works here", when methods differ
    synthetic_data: bool  # True: the numbers come from generated data, not a real dataset
    raw: dict[str, Any] = field(repr=False)

    def summary(self) -> list[dict[str, Any]]:
        """One row per model (key, title, accuracy mean/std/interval, top-5 accuracy, method, ECE,
        seeds): ready for ``pandas.DataFrame(results.summary())``."""
        return [
            {
                "model": model.key,
                "title": model.title,
                "test_accuracy": model.test_accuracy,
                "test_accuracy_std": model.test_accuracy_std,
                "ci95_low": model.test_accuracy_ci95[0] if model.test_accuracy_ci95 else None,
                "ci95_high": model.test_accuracy_ci95[1] if model.test_accuracy_ci95 else None,
                "test_top5_accuracy": model.test_top5_accuracy,
                "method": model.method,
                "ece": model.calibration.get("ece"),
                "seeds": len(model.seeds),
            }
            for model in self.models.values()
        ]


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), plugins: Sequence[str] = ()
) -> StudyConfig:
    """A study's config: the preset at ``path`` (default: the paper's protocol) with ``overrides``
    (``"train.epochs=5"``, as ``--set``) and ``plugins`` (as ``--plugin``), every name checked."""
    from distillbench.study.resolve import load_study_config

    if isinstance(overrides, str) or isinstance(plugins, str):
        raise UserError("load_config: overrides and plugins are lists of strings, e.g. overrides=['train.epochs=5'].")

    return load_study_config(Path(path) if path is not None else None, list(overrides), list(plugins))


def run_study(
    config_or_path: StudyConfig | str | Path | None, out: str | Path, overrides: Sequence[str] = ()
) -> StudyResults:
    """Train what is not finished of the study in ``out`` (resuming it), write its report, and
    return its results. ``config_or_path``: a ``StudyConfig``, a preset file, or None (the paper's
    protocol); ``overrides`` apply to a file or None only."""
    from distillbench.study.runner import Study

    if isinstance(overrides, str):
        raise UserError(f"run_study: overrides is a list of KEY=VALUE strings, e.g. [{overrides!r}], not one string.")
    if isinstance(config_or_path, StudyConfig):
        if overrides:
            raise UserError("run_study: overrides apply to a config file; pass load_config(path, overrides) instead.")
        cfg = config_or_path
    else:
        cfg = load_config(config_or_path, overrides)
    Study(cfg, Path(out)).run()
    return load_results(out)


def load_results(out: str | Path) -> StudyResults:
    """The results of the study in ``out`` (its results.json, written by ``run`` and ``report``)."""
    from distillbench.study.layout import RunLayout
    from distillbench.study.results import SCHEMA_VERSION

    path = RunLayout(Path(out)).results
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{path} does not exist: {out} is not a finished study. Run it (distillbench run --out {out}) or "
            f"rebuild its report (distillbench report {out})."
        ) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read ({exc}); rebuild it with `distillbench report {out}`.") from None
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise UserError(
            f"{path} has results schema {raw.get('schema_version')}, this distillbench reads {SCHEMA_VERSION}; "
            f"rebuild it from the saved runs with `distillbench report {out}` (no training)."
        )
    models = {key: _model_result(key, entry) for key, entry in raw["models"].items()}
    return StudyResults(
        name=raw["study"]["name"],
        schema_version=raw["schema_version"],
        models=models,
        comparisons=raw.get("comparisons", []),
        distillation=raw.get("distillation"),
        synthetic_data=bool(raw["study"].get("synthetic_data")),
        raw=raw,
    )


def _model_result(key: str, entry: dict[str, Any]) -> ModelResult:
    return ModelResult(
        key=key,
        title=entry["title"],
        arch=entry["arch"],
        teachers=list(entry["teachers"]),
        test_accuracy=entry["test_accuracy"],
        test_accuracy_std=entry["test_accuracy_std"],
        test_accuracy_ci95=tuple(entry["test_accuracy_ci95"]) if entry["test_accuracy_ci95"] else None,
        test_top5_accuracy=entry.get("test_top5_accuracy"),
        method=entry["method"],
        seeds=[seed["seed"] for seed in entry["seeds"]],
        calibration=dict(entry["calibration"]),
        per_class=entry["per_class"],
        recipe=entry.get("recipe", {}),
        efficiency=entry.get("efficiency"),
        raw=entry,
    )
