"""``results.json`` from what the runs saved: every number recomputed from the predictions.

The metrics are ``distillbench.evaluation``'s; this module gathers the study's finished runs, scores
each seed, aggregates the seeds of each model (mean, standard deviation, t interval) and adds what
the report states about the study and each model's recipe (docs/results-schema.md).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from distillbench.atomic import write_json
from distillbench.config import ComparisonDef, EvaluationConfig, StudyConfig, load_config
from distillbench.errors import UserError
from distillbench.evaluation.calibration import (
    bins_to_json,
    calibration_metrics,
    expected_calibration_error,
    reliability_bins,
)
from distillbench.evaluation.metrics import prediction_metrics
from distillbench.evaluation.significance import mean_std_ci, paired_comparison
from distillbench.study.layout import RunLayout
from distillbench.study.plan import RunSpec
from distillbench.study.recipe import ModelRecipe, Recipes, model_recipes
from distillbench.study.resolve import check_names
from distillbench.study.store import RunStore, SavedRun

# docs/results-schema.md; 2: models under "models", stale runs, two comparison intervals; 3: top-5 and
# superclass accuracy, num_classes, each student's method and aggregation in words.
SCHEMA_VERSION = 3
CALIBRATION_METRICS = ("ece", "nll", "brier")


def _mean_spread(values: list[float], name: str) -> dict[str, Any]:
    mean, std, ci95 = mean_std_ci(values)
    return {name: mean, f"{name}_std": std, f"{name}_ci95": ci95}


def _mean_of(records: list[dict[str, float]]) -> dict[str, float]:
    """Per metric, the mean over seeds; ``support`` (the same test images in every seed) stays a count."""
    return {
        metric: records[0][metric] if metric == "support" else float(np.mean([r[metric] for r in records]))
        for metric in records[0]
    }


def _calibration_summary(per_seed: list[dict[str, float]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for metric in CALIBRATION_METRICS:
        mean, std, _ = mean_std_ci([c[metric] for c in per_seed])
        summary[metric], summary[f"{metric}_std"] = mean, std
    return summary


def _efficiency_summary(per_seed: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Counts from the first seed (they do not depend on it); timings as the median over seeds."""
    measured = [e for e in per_seed if e]
    if not measured:
        return None
    summary = dict(measured[0])
    for timing in ("latency_ms_batch1", "images_per_s_batch256"):
        summary[timing] = statistics.median(e[timing] for e in measured)
    if any("timing_busy" in e for e in measured):
        summary["timing_busy"] = any(e.get("timing_busy", False) for e in measured)
    return summary


def _seed_record(seed: int, run: SavedRun, teacher_logits: np.ndarray | None, bins: int) -> dict[str, Any]:
    """One run's results: its test metrics and calibration, and what its record says of its training."""
    record = {
        "seed": seed,
        **prediction_metrics(run.y_true, run.logits, run.class_names, run.record.get("superclasses")),
        "calibration": calibration_metrics(run.logits, run.y_true, bins),
        **{k: run.record[k] for k in ("epochs_trained", "best_epoch", "train_seconds")},
        "efficiency": run.record.get("efficiency"),
        "history": run.history,
    }
    if teacher_logits is not None:
        record["teacher_agreement"] = float(np.mean(run.logits.argmax(1) == teacher_logits.argmax(1)))
    return record


def _accuracies(seed_records: list[dict[str, Any]]) -> dict[str, Any]:
    """The accuracies over seeds: top-1, and top-5 and per superclass where the seeds have them."""
    first = seed_records[0]
    accuracies = _mean_spread([r["test_accuracy"] for r in seed_records], "test_accuracy")
    # Only where every seed has them: a seed saved before a dataset declared superclasses has none.
    if all("top5_accuracy" in r for r in seed_records):
        accuracies.update(_mean_spread([r["top5_accuracy"] for r in seed_records], "test_top5_accuracy"))
    if all("superclass_accuracy" in r for r in seed_records):
        accuracies.update(
            _mean_spread([r["test_superclass_accuracy"] for r in seed_records], "test_superclass_accuracy")
        )
        accuracies["superclass_accuracy"] = {
            name: _mean_of([r["superclass_accuracy"][name] for r in seed_records])
            for name in first["superclass_accuracy"]
        }
    return accuracies


def _model_entry(
    recipe: ModelRecipe, runs: dict[int, SavedRun], teacher_logits: dict[int, np.ndarray], bins: int
) -> dict[str, Any]:
    seed_records = [_seed_record(seed, run, teacher_logits.get(seed), bins) for seed, run in runs.items()]
    first = next(iter(runs.values())).record
    entry: dict[str, Any] = {
        **_accuracies(seed_records),
        "per_class": {
            name: _mean_of([r["per_class"][name] for r in seed_records]) for name in seed_records[0]["per_class"]
        },
        "confusion_matrix": np.sum([r["confusion_matrix"] for r in seed_records], axis=0).tolist(),
        "calibration": _calibration_summary([r["calibration"] for r in seed_records]),
        "reliability": _pooled_reliability(runs, bins),
        "efficiency": _efficiency_summary([r["efficiency"] for r in seed_records]),
        # The first seed's curve and epochs, as in a single-seed study; every seed's are in ``seeds``.
        "history": seed_records[0]["history"],
        "epochs_trained": seed_records[0]["epochs_trained"],
        "best_epoch": seed_records[0]["best_epoch"],
        "train_seconds": float(np.mean([r["train_seconds"] for r in seed_records])),
        "params": first["params"],
        "trainable_params": first["trainable_params"],
        "title": first.get("title", recipe.key),
        "arch": first["arch"],
        "teachers": first["teachers"],
        "method": describe_method(recipe),
        "aggregation": recipe.method.aggregation if recipe.method is not None else None,
        **({"recipe": first["recipe"]} if "recipe" in first else {}),
        "weights": first["weights"],
    }
    if teacher_logits:
        entry["teacher_agreement"] = float(
            np.mean([r["teacher_agreement"] for r in seed_records if "teacher_agreement" in r])
        )
    entry["seeds"] = seed_records
    return entry


def _pooled_reliability(runs: dict[int, SavedRun], bins: int) -> dict[str, Any]:
    """The reliability diagram's data: every seed's test predictions pooled, binned as the ECE is,
    with ``ece``, the ECE of exactly these bins (with one seed, the model's ECE)."""
    pooled = reliability_bins(
        np.concatenate([run.logits for run in runs.values()]),
        np.concatenate([run.y_true for run in runs.values()]),
        bins,
    )
    return {**bins_to_json(pooled), "ece": expected_calibration_error(pooled)}


def _teacher_logits(runs: dict[str, dict[int, SavedRun]], members: list[str]) -> dict[int, np.ndarray]:
    """Per seed where every member finished: the mean of the members' test logits."""
    common = set.intersection(*(set(runs.get(m, {})) for m in members)) if members else set()
    return {seed: np.mean([runs[m][seed].logits for m in members], axis=0) for seed in sorted(common)}


def _ensemble_entry(members: list[str], logits: dict[int, np.ndarray], y_true: np.ndarray, bins: int) -> dict[str, Any]:
    per_seed = [
        {
            "seed": seed,
            "test_accuracy": float(np.mean(seed_logits.argmax(1) == y_true)),
            "calibration": calibration_metrics(seed_logits, y_true, bins),
        }
        for seed, seed_logits in logits.items()
    ]
    return {
        "members": members,
        **_mean_spread([s["test_accuracy"] for s in per_seed], "test_accuracy"),
        "calibration": _calibration_summary([s["calibration"] for s in per_seed]),
        "seeds": per_seed,
    }


def _comparison(
    spec: ComparisonDef, runs: dict[str, dict[int, SavedRun]], results: dict[str, Any], evaluation: EvaluationConfig
) -> dict[str, Any] | None:
    seeds = sorted(set(runs.get(spec.a, {})) & set(runs.get(spec.b, {})))
    if not seeds:
        return None
    correct_a = np.stack([runs[spec.a][s].correct for s in seeds])
    correct_b = np.stack([runs[spec.b][s].correct for s in seeds])
    tested = paired_comparison(
        correct_a, correct_b, results[spec.a]["title"], results[spec.b]["title"], evaluation.bootstrap_resamples
    )
    # The seeds' ECE as their records already hold it, over the seeds both models finished.
    ece = {
        key: [r["calibration"]["ece"] for r in results[key]["seeds"] if r["seed"] in seeds] for key in (spec.a, spec.b)
    }
    return {
        "a": spec.a,
        "b": spec.b,
        "claim": spec.claim,
        "seeds": seeds,
        **tested,
        "ece_diff": float(np.mean(ece[spec.a]) - np.mean(ece[spec.b])),
    }


def collect_results(root: Path) -> dict[str, Any]:
    """Every current run of the study in ``root`` (its config.yaml and plan.json), per model
    aggregated over its finished seeds. A run whose identity does not match the plan is stale: it is
    listed as such and never counted as a result."""
    layout = RunLayout(root)
    if not layout.config.is_file():
        raise UserError(f"{root} is not a study output directory: it has no config.yaml. Give the --out of a run.")
    store = RunStore(root)
    planned = store.read_plan()  # first: an older study's config may not parse, and this says what to do
    cfg = check_names(load_config(layout.config), str(layout.config))  # imports the study's plugins
    runs, stale = _finished_runs(store, planned)
    all_runs = [run for per_seed in runs.values() for run in per_seed.values()]
    if any(not np.array_equal(run.y_true, all_runs[0].y_true) for run in all_runs):
        raise UserError(
            f"The saved runs in {root} were evaluated on different test sets; they cannot be compared. "
            "Use a fresh --out directory for a study with different data."
        )
    recipes = model_recipes(cfg)
    results: dict[str, Any] = {}
    for key, per_seed in runs.items():
        members = next(iter(per_seed.values())).record["teachers"]
        results[key] = _model_entry(recipes[key], per_seed, _teacher_logits(runs, members), cfg.evaluation.ece_bins)
    compared = [entry for spec in cfg.comparisons if (entry := _comparison(spec, runs, results, cfg.evaluation))]
    output = {
        "schema_version": SCHEMA_VERSION,
        "study": _study_entry(cfg, planned, runs, stale),
        "models": results,
        "teachers": _ensembles(runs, cfg.evaluation.ece_bins),
        "comparisons": compared,
    }
    methods = _distillation_methods(cfg, recipes, runs, results)
    if methods:
        output["distillation"] = methods
    return output


def _finished_runs(store: RunStore, planned: list[RunSpec]) -> tuple[dict[str, dict[int, SavedRun]], list[str]]:
    """The plan's finished runs by model and seed, and a line per stale run saying why it is."""
    runs: dict[str, dict[int, SavedRun]] = {}
    stale: list[str] = []
    for run in planned:
        state, why = store.state(run)
        if state == "finished":
            runs.setdefault(run.model, {})[run.seed] = store.load(run.model, run.seed)
        elif state == "stale":
            stale.append(f"{run.model} seed {run.seed} ({why})")
    return runs, stale


def _ensembles(runs: dict[str, dict[int, SavedRun]], ece_bins: int) -> dict[str, Any]:
    """An entry per distinct ensemble of teachers that a student distilled, scored as a classifier."""
    ensembles: list[tuple[str, ...]] = []
    for per_seed in runs.values():
        members = tuple(next(iter(per_seed.values())).record["teachers"])
        if len(members) > 1 and members not in ensembles:
            ensembles.append(members)
    y_true = next(iter(next(iter(runs.values())).values())).y_true if runs else None
    teachers = {}
    for group in ensembles:
        logits = _teacher_logits(runs, list(group))
        if logits:
            name = "ensemble" if len(ensembles) == 1 else "ensemble(" + "+".join(group) + ")"
            teachers[name] = _ensemble_entry(list(group), logits, y_true, ece_bins)
    return teachers


def _study_entry(
    cfg: StudyConfig, planned: list[RunSpec], runs: dict[str, dict[int, SavedRun]], stale: list[str]
) -> dict[str, Any]:
    """results.json's ``study``: what was planned and finished, the data and numerics the runs
    record, and the settings the report states."""
    order = list(dict.fromkeys(run.model for run in planned))
    seeds = list(dict.fromkeys(run.seed for run in planned))
    records = [run.record for per_seed in runs.values() for run in per_seed.values()]
    first = records[0] if records else None
    first_run = next(iter(next(iter(runs.values())).values())) if runs else None
    config = cfg.model_dump(mode="json")
    return {
        "name": cfg.name,
        "seeds": seeds,
        "models": order,
        "finished": [key for key in order if len(runs.get(key, {})) == len(seeds)],
        "unfinished_runs": [f"{key} seed {seed}" for key in order for seed in seeds if seed not in runs.get(key, {})],
        "stale_runs": stale,
        "class_names": first_run.class_names if first_run else [],
        "num_classes": len(first_run.class_names) if first_run else 0,
        "superclasses": first.get("superclasses") if first else None,  # runs written before it: null
        "data_source": first.get("data_source") if first else None,
        "synthetic_data": bool(first and first.get("synthetic_data")),
        "device": first.get("device") if first else None,
        "precision": first.get("precision") if first else None,
        "channels_last": first.get("channels_last") if first else None,
        "weights": {r["arch"]: r["weights"] for r in records if r.get("weights")},
        "kd": config["kd"],
        "train": config["train"],
        "evaluation": cfg.evaluation.model_dump(mode="json"),
    }


def describe_method(recipe: ModelRecipe) -> str | None:
    """A student's method in a few words: the resolved method's name and aggregation (the default
    too: ``kd · mean_logits``), then the parameters its ``distill`` mapping sets, ``dkd · mean_logits
    (beta=8.0)``; None for a model without teachers."""
    if recipe.method is None:
        return None
    distill = recipe.spec.distill
    explicit = (
        {} if isinstance(distill, str) else {k: v for k, v in distill.items() if k not in ("method", "aggregation")}
    )
    words = f"{recipe.method.method} · {recipe.method.aggregation}"
    return words + (f" ({', '.join(f'{k}={v}' for k, v in explicit.items())})" if explicit else "")


def _distillation_methods(
    cfg: StudyConfig, recipes: Recipes, runs: dict[str, dict[int, SavedRun]], results: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """One entry per finished student (and the scratch baseline), sorted by accuracy: the method,
    and its difference from the scratch model and from the plain-KD reference, each with the
    seed-aware intervals and verdict; None unless students use more than one method."""
    students = [key for key in results if recipes[key].method is not None]
    methods = {json.dumps(recipes[key].method.model_dump(mode="json"), sort_keys=True) for key in students}
    if len(methods) < 2:
        return None
    scratch, reference = cfg.evaluation.scratch, cfg.evaluation.kd_reference
    entries = []
    for key in [scratch, *students] if scratch in results else students:
        recipe, entry = recipes[key], results[key]
        row = {
            "model": key,
            "title": entry["title"],
            "method": describe_method(recipe) or "none (trained from scratch)",
            "teachers": list(recipe.teachers),
            "test_accuracy": entry["test_accuracy"],
            "test_accuracy_std": entry["test_accuracy_std"],
            "ece": entry["calibration"]["ece"],
            "teacher_agreement": entry.get("teacher_agreement"),
        }
        for name, other in (("vs_scratch", scratch), ("vs_kd", reference)):
            if other != key and other in runs:
                compared = _comparison(
                    ComparisonDef(
                        a=key, b=other, claim=f"{entry['title']} is more accurate than {results[other]['title']}"
                    ),
                    runs,
                    results,
                    cfg.evaluation,
                )
                if compared is not None:  # None: no seed that both finished
                    row[name] = {k: compared[k] for k in ("accuracy_diff", "ci95_seeds", "ci95_images", "outcome")}
        entries.append(row)
    return sorted(entries, key=lambda row: -row["test_accuracy"])


def finish_study(root: Path) -> dict[str, Any]:
    """``results.json`` and the report (figures, report.md, report.html) from what is on disk: the
    last step of ``run``, and all of ``report``."""
    from distillbench.reporting import write_report

    layout = RunLayout(root)
    results = collect_results(layout.root)
    write_json(layout.results, results)
    write_report(layout.root, results)
    return results
