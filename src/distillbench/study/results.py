"""``results.json`` from what the runs saved: every number recomputed from the predictions.

The metrics are ``distillbench.evaluation``'s; this module gathers the study's finished runs, scores
each seed, aggregates the seeds of each model (mean, standard deviation, t interval) and adds what
the report states about the study and each model's recipe (docs/results-schema.md).

Published vs reproduced (``reproduction``, per model with a ``published`` row or in a study with
``train.test_every_epoch``): the accuracy each way of choosing the epoch gives (the last epoch, the
best epoch on test, the validation-selected one), and each published number tested against ours
chosen as the paper chose its epoch (``evaluation.equivalence``). Optional keys of schema 3: a
results.json without them still reads.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from distillbench.atomic import write_json
from distillbench.config import ComparisonDef, EvaluationConfig, PublishedRow, StudyConfig, load_config
from distillbench.errors import UserError
from distillbench.evaluation.calibration import (
    bins_to_json,
    calibration_metrics,
    expected_calibration_error,
    reliability_bins,
)
from distillbench.evaluation.equivalence import equivalence, seeds_to_resolve
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
        # How the kept weights were chosen; runs recorded before it was written have none.
        **({"selected": run.record["selected"]} if "selected" in run.record else {}),
        # The epochs it was to train (its recipe's): a run that stopped early has no last-epoch number.
        **({"epochs_planned": run.record["recipe"]["epochs"]} if "epochs" in (run.record.get("recipe") or {}) else {}),
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
        # A feature method distils one teacher: it aggregates nothing.
        "aggregation": None if recipe.method is None or recipe.method.needs_features else recipe.method.aggregation,
        **({"recipe": first["recipe"]} if "recipe" in first else {}),
        "weights": first["weights"],
    }
    if teacher_logits:
        entry["teacher_agreement"] = float(
            np.mean([r["teacher_agreement"] for r in seed_records if "teacher_agreement" in r])
        )
    entry["seeds"] = seed_records
    return entry


# The ways of choosing a trained model's epoch that ``reproduction`` reports, in the report's order.
EPOCH_CHOICES = ("last_epoch", "best_epoch_on_test", "validation_selected")
# A published row's ``selection`` -> our number chosen the same way; ``unknown`` is compared with our
# last epoch, the choice that looks at no test data.
COMPARED_WITH = {"best_epoch": "best_epoch_on_test", "last_epoch": "last_epoch", "unknown": "last_epoch"}


def seed_selection(seed: dict[str, Any]) -> str:
    """How a seed's kept weights were chosen: ``released`` (an empty history: a checkpoint loaded and
    evaluated, not trained), else its record's ``selected`` (``validation`` or ``last_epoch``); runs
    recorded before ``selected`` was: by validation when their history has validation numbers."""
    history = seed["history"]
    if not history:
        return "released"
    if seed.get("selected"):
        return seed["selected"]
    return "validation" if "val_accuracy" in history[0] else "last_epoch"


def epoch_choices(seed: dict[str, Any]) -> dict[str, float | None]:
    """One seed's test accuracy (a fraction) per way of choosing the epoch (``EPOCH_CHOICES``), None
    where its run cannot tell; a released checkpoint has only ``checkpoint``.

    ``last_epoch``: the history's last ``test_accuracy`` (``train.test_every_epoch``), else the
    predictions' accuracy when the kept weights are the last epoch's. ``best_epoch_on_test``: the
    highest ``test_accuracy`` over the epochs (selected on the test set: optimistic). ``validation_selected``:
    the predictions' accuracy when validation chose the kept weights."""
    selection = seed_selection(seed)
    if selection == "released":
        return {"checkpoint": seed["test_accuracy"], **dict.fromkeys(EPOCH_CHOICES)}
    history = seed["history"]
    kept_last = selection == "last_epoch" or seed.get("best_epoch") == history[-1]["epoch"]
    if seed.get("epochs_planned") and len(history) < seed["epochs_planned"]:
        last = None  # stopped early: its last epoch is not the budget's last, which published numbers are
    elif "test_accuracy" in history[-1]:
        last = history[-1]["test_accuracy"]
    else:
        last = seed["test_accuracy"] if kept_last else None
    tracked = all("test_accuracy" in row for row in history)
    return {
        "last_epoch": last,
        "best_epoch_on_test": max(row["test_accuracy"] for row in history) if tracked else None,
        "validation_selected": seed["test_accuracy"] if selection == "validation" else None,
    }


def _summary(values: list[float | None], resolvable: float) -> dict[str, Any] | None:
    """Mean, std, 95% interval and seeds to resolve ``resolvable`` over the seeds, when every seed has a value."""
    if not values or any(v is None for v in values):
        return None
    mean, std, ci95 = mean_std_ci(values)
    return {
        "mean": mean,
        "std": std,
        "ci95": ci95,
        "n": len(values),
        "per_seed": list(values),
        "seeds_to_resolve": seeds_to_resolve(std, resolvable),
    }


# Why a published row is compared with the number it is, by its ``selection``.
_COMPARED_WHY = {
    "best_epoch": "the source took the best test accuracy over epochs: compared with ours chosen the same way, "
    "which is optimistic",
    "last_epoch": "the source took the last epoch: compared with our last epoch",
    "unknown": "the source does not say how it chose the epoch: compared with our last epoch",
}


def _published_entry(
    row: PublishedRow, numbers: dict[str, dict[str, Any] | None], released: bool, evaluation: EvaluationConfig
) -> dict[str, Any]:
    """One published number against ours chosen the same way: the TOST verdict and what it compared."""
    margin = evaluation.equivalence_margin / 100
    compared = "checkpoint" if released else COMPARED_WITH[row.selection]
    entry: dict[str, Any] = {
        "published_accuracy": row.value / 100,
        "source": row.source,
        "selection": row.selection,
        "runs": row.runs,
        "margin": margin,
        "compared": compared,
        "compared_why": (
            "a released checkpoint: its test accuracy, which no choice of epoch changes"
            if released
            else _COMPARED_WHY[row.selection]
        ),
    }
    ours = numbers.get(compared)
    if ours is None:
        missing = (
            "the study did not measure test accuracy after every epoch (train.test_every_epoch: false)"
            if compared == "best_epoch_on_test"
            else "the runs kept another epoch's weights and did not measure test accuracy after every epoch "
            "(train.test_every_epoch: false)"
        )
        why = f"no {compared.replace('_', ' ')} number: {missing}"
        return {**entry, "verdict": "inconclusive", "why": why, "seeds_to_resolve": None}
    tested = equivalence(ours["per_seed"], row.value / 100, margin, fixed=released)
    kept = ("n", "mean", "difference", "ci90", "ci95", "p_lower", "p_upper", "p_tost", "difference_significant")
    return {
        **entry,
        **{k: tested[k] for k in kept},
        "verdict": tested["verdict"],
        "why": tested["why"],
        "seeds_to_resolve": ours["seeds_to_resolve"],
    }


def reproduction(
    seed_records: list[dict[str, Any]], published: list[PublishedRow], evaluation: EvaluationConfig
) -> dict[str, Any]:
    """A model's ``reproduction`` block from its seeds' records (``_seed_record``): each epoch
    choice's accuracy over seeds, the best-minus-last gap, and each ``published`` row tested."""
    resolvable = evaluation.resolvable_difference / 100
    per_seed = [epoch_choices(seed) for seed in seed_records]
    selections = sorted({seed_selection(seed) for seed in seed_records})
    released = selections == ["released"]
    numbers: dict[str, dict[str, Any] | None] = {
        name: _summary([choice[name] for choice in per_seed], resolvable) for name in EPOCH_CHOICES
    }
    if released:
        checkpoint = _summary([choice["checkpoint"] for choice in per_seed], resolvable)
        # No training randomness: more seeds evaluate the same weights again.
        numbers["checkpoint"] = checkpoint and {**checkpoint, "seeds_to_resolve": None}
    gaps = [
        None
        if c["best_epoch_on_test"] is None or c["last_epoch"] is None
        else c["best_epoch_on_test"] - c["last_epoch"]
        for c in per_seed
    ]
    return {
        "released": released,
        "selected": selections[0] if len(selections) == 1 else "mixed",
        **numbers,
        "best_minus_last": None if released else _summary(gaps, resolvable),
        "published": [_published_entry(row, numbers, released, evaluation) for row in published],
    }


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
        rows = [row for row in cfg.published if row.model == key]
        if rows or cfg.train.test_every_epoch:
            results[key]["reproduction"] = reproduction(results[key]["seeds"], rows, cfg.evaluation)
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
        # A backbone's weights are its architecture's; a released checkpoint or a timm model's, its model's.
        "weights": {
            (r["model"] if r.get("loaded_from") or r["arch"] == "timm" else r["arch"]): r["weights"]
            for r in records
            if r.get("weights")
        },
        "val_size": cfg.data.val_size,  # 0: no validation split, every number from the last epoch
        "published": config["published"],  # as configured: value in percent
        "kd": config["kd"],
        "train": config["train"],
        "evaluation": cfg.evaluation.model_dump(mode="json"),
    }


def describe_method(recipe: ModelRecipe) -> str | None:
    """A student's method in a few words: the resolved method's name and aggregation (the default
    too: ``kd · mean_logits``; a feature method, which distils one teacher, its name alone), then the
    parameters its ``distill`` mapping sets, ``dkd · mean_logits (beta=8.0)``; None for a model
    without teachers."""
    if recipe.method is None:
        return None
    distill = recipe.spec.distill
    explicit = (
        {} if isinstance(distill, str) else {k: v for k, v in distill.items() if k not in ("method", "aggregation")}
    )
    method = recipe.method
    words = method.method if method.needs_features else f"{method.method} · {method.aggregation}"
    return words + (f" ({', '.join(f'{k}={v}' for k, v in explicit.items())})" if explicit else "")


def _baselines(cfg: StudyConfig, recipes: Recipes, results: dict[str, Any], key: str) -> tuple[str | None, str | None]:
    """Model ``key``'s two baselines: the scratch model and the plain-KD student (``evaluation.scratch``
    and ``kd_reference``; ``auto``: the finished model of ``key``'s architecture without teachers, and
    the finished plain-KD student of its architecture and teachers), None where there is none."""
    recipe = recipes[key]
    scratch, reference = cfg.evaluation.scratch, cfg.evaluation.kd_reference
    if scratch == "auto":
        same_arch = [k for k in results if recipes[k].arch == recipe.arch and recipes[k].method is None]
        scratch = same_arch[0] if same_arch else None
    if reference == "auto":
        plain_kd = [
            k
            for k in results
            if recipes[k].arch == recipe.arch
            and recipes[k].teachers == recipe.teachers
            and recipes[k].method is not None
            and recipes[k].method.method == "kd"
            and recipes[k].method.aggregation == "mean_logits"
        ]
        reference = plain_kd[0] if plain_kd and recipe.method is not None else None
    return scratch, reference


def _distillation_methods(
    cfg: StudyConfig, recipes: Recipes, runs: dict[str, dict[int, SavedRun]], results: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """One entry per finished student (and its scratch baseline), sorted by accuracy: the method,
    and its difference from the scratch model and from the plain-KD reference (``_baselines``), each
    with the seed-aware intervals and verdict; None unless students use more than one method."""
    students = [key for key in results if recipes[key].method is not None]
    methods = {json.dumps(recipes[key].method.model_dump(mode="json"), sort_keys=True) for key in students}
    if len(methods) < 2:
        return None
    scratches = {_baselines(cfg, recipes, results, key)[0] for key in students}
    entries = []
    for key in [k for k in results if k in scratches] + students:
        recipe, entry = recipes[key], results[key]
        scratch, reference = _baselines(cfg, recipes, results, key)
        row = {
            "model": key,
            "title": entry["title"],
            "method": describe_method(recipe) or "none (trained from scratch)",
            "teachers": list(recipe.teachers),
            "test_accuracy": entry["test_accuracy"],
            "test_accuracy_std": entry["test_accuracy_std"],
            "ece": entry["calibration"]["ece"],
            "teacher_agreement": entry.get("teacher_agreement"),
            "scratch": scratch,
            "kd_reference": reference,
        }
        for name, other in (("vs_scratch", scratch), ("vs_kd", reference)):
            if other is not None and other != key and other in runs:
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
    # Several pairs (auto baselines): each scratch model's students together, then by accuracy.
    groups = [k for k in results if k in scratches]
    return sorted(
        entries,
        key=lambda row: (groups.index(row["scratch"]) if row["scratch"] in groups else -1, -row["test_accuracy"]),
    )


def finish_study(root: Path) -> dict[str, Any]:
    """``results.json`` and the report (figures, report.md, report.html) from what is on disk: the
    last step of ``run``, and all of ``report``."""
    from distillbench.reporting import write_report

    layout = RunLayout(root)
    results = collect_results(layout.root)
    write_json(layout.results, results)
    write_report(layout.root, results)
    return results
