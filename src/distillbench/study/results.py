"""``results.json`` from what the runs saved: every number recomputed from the predictions."""

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
from distillbench.evaluation.metrics import classification_metrics
from distillbench.evaluation.significance import mean_std_ci, paired_comparison
from distillbench.study.layout import RunLayout
from distillbench.study.plan import RunSpec
from distillbench.study.recipe import Recipes, model_recipes
from distillbench.study.resolve import check_names
from distillbench.study.store import RunStore, SavedRun

SCHEMA_VERSION = 2  # docs/results-schema.md; 2: models under "models", stale runs, two comparison intervals
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
    return summary


def _model_entry(
    key: str, runs: dict[int, SavedRun], teacher_logits: dict[int, np.ndarray], bins: int
) -> dict[str, Any]:
    seed_records = []
    for seed, run in runs.items():
        seed_record = {
            "seed": seed,
            **classification_metrics(run.y_true, run.logits.argmax(1), run.class_names),
            "calibration": calibration_metrics(run.logits, run.y_true, bins),
            **{k: run.record[k] for k in ("epochs_trained", "best_epoch", "train_seconds")},
            "efficiency": run.record.get("efficiency"),
            "history": run.history,
        }
        if seed in teacher_logits:
            seed_record["teacher_agreement"] = float(np.mean(run.logits.argmax(1) == teacher_logits[seed].argmax(1)))
        seed_records.append(seed_record)
    first = next(iter(runs.values())).record
    entry: dict[str, Any] = {
        **_mean_spread([r["test_accuracy"] for r in seed_records], "test_accuracy"),
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
        "title": first.get("title", key),
        "arch": first["arch"],
        "teachers": first["teachers"],
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
    results: dict[str, Any] = {}
    for key, per_seed in runs.items():
        members = next(iter(per_seed.values())).record["teachers"]
        results[key] = _model_entry(key, per_seed, _teacher_logits(runs, members), cfg.evaluation.ece_bins)
    compared = [entry for spec in cfg.comparisons if (entry := _comparison(spec, runs, results, cfg.evaluation))]
    output = {
        "schema_version": SCHEMA_VERSION,
        "study": _study_entry(cfg, planned, runs, stale),
        "models": results,
        "teachers": _ensembles(runs, cfg.evaluation.ece_bins),
        "comparisons": compared,
    }
    methods = _distillation_methods(cfg, model_recipes(cfg), runs, results)
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


def describe_method(distill: str | dict[str, Any]) -> str:
    """A student's method in a few words: its name, its aggregation if not the mean of logits, and
    the parameters it sets."""
    if isinstance(distill, str):
        return distill
    name = distill.get("method", "kd")
    params = [f"{k}={v}" for k, v in distill.items() if k not in ("method", "aggregation")]
    aggregation = distill.get("aggregation")
    words = name + (f" · {aggregation}" if aggregation and aggregation != "mean_logits" else "")
    return words + (f" ({', '.join(params)})" if params else "")


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
            "method": describe_method(recipe.spec.distill) if recipe.teachers else "none (trained from scratch)",
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
