"""A results.json (schema 3) of a large study made up from random numbers, no training: CIFAR-100's
shape (100 classes in 20 superclasses of 5, 100 test images each), 15 models (a scratch model, two
teachers, plain KD and 11 other students, two of them controls), three seeds. Its predictions are
drawn so that a model errs within the true class's superclass more often than outside it, as real
models do, and every number derived from them (per class, confusion, superclass, top-5) is
consistent with them."""

from __future__ import annotations

from typing import Any

import numpy as np

from distillbench.evaluation.metrics import classification_metrics
from distillbench.evaluation.significance import mean_std_ci

STUDENTS = [
    ("kd_resnet50", "KD from ResNet50", "kd · mean_logits", ["resnet50"]),
    ("dkd_resnet50", "DKD from ResNet50", "dkd · mean_logits (warmup_epochs=5)", ["resnet50"]),
    ("lskd_resnet50", "LSKD from ResNet50", "lskd · mean_logits", ["resnet50"]),
    ("dist_resnet50", "DIST from ResNet50", "dist · mean_logits", ["resnet50"]),
    ("kd_ensemble", "KD from ResNet50 + VGG16", "kd · mean_logits", ["resnet50", "vgg16"]),
    ("ensemble_mean_probs", "KD ensemble mean probs", "kd · mean_probs", ["resnet50", "vgg16"]),
    ("ensemble_mean_kl", "KD ensemble mean KL", "kd · mean_kl", ["resnet50", "vgg16"]),
    ("ensemble_entropy_weighted", "KD ensemble entropy-weighted", "kd · entropy_weighted", ["resnet50", "vgg16"]),
    (
        "ensemble_confidence_weighted",
        "KD ensemble confidence-weighted",
        "kd · confidence_weighted",
        ["resnet50", "vgg16"],
    ),
    ("ensemble_standardized_mean", "KD ensemble standardized mean", "kd · standardized_mean", ["resnet50", "vgg16"]),
    ("label_smoothing", "Label smoothing (control)", "label_smoothing · mean_logits", ["resnet50"]),
    ("shuffled_teacher", "Shuffled teacher (control)", "shuffled_teacher · mean_logits", ["resnet50"]),
]
BASELINES = [("small_cnn", "Small CNN"), ("resnet50", "Fine-tuned ResNet50"), ("vgg16", "Fine-tuned VGG16")]


def _interval(values: list[float]) -> tuple[float, float | None, list[float] | None]:
    mean, std, ci95 = mean_std_ci(values)
    return mean, std, ci95


def _spread(values: list[float], name: str) -> dict[str, Any]:
    mean, std, ci95 = _interval(values)
    return {name: mean, f"{name}_std": std, f"{name}_ci95": ci95}


def _predictions(rng: np.random.Generator, y_true: np.ndarray, skill: float, groups: int) -> tuple[np.ndarray, float]:
    """Predicted classes for ``y_true`` at about ``skill`` accuracy (each class its own difficulty),
    two thirds of the errors within the true class's superclass (class c is in superclass c mod
    ``groups``); and a top-5 accuracy consistent with them."""
    classes = int(y_true.max()) + 1
    difficulty = np.linspace(-0.15, 0.15, classes)[np.argsort(np.sin(np.arange(classes) * 7.3))]
    right = rng.random(len(y_true)) < np.clip(skill + difficulty[y_true], 0.02, 0.98)
    # A wrong prediction: another class of the superclass, or any other class.
    other = rng.integers(0, classes - 1, len(y_true))
    anywhere = np.where(other < y_true, other, other + 1)
    if groups:
        size, place = classes // groups, y_true // groups
        mate = rng.integers(0, size - 1, len(y_true))
        within = y_true % groups + groups * np.where(mate < place, mate, mate + 1)
        anywhere = np.where(rng.random(len(y_true)) < 2 / 3, within, anywhere)
    y_pred = np.where(right, y_true, anywhere)
    accuracy = float(np.mean(right))
    return y_pred, min(1.0, accuracy + 0.6 * (1 - accuracy))


def _superclass(y_true: np.ndarray, y_pred: np.ndarray, group: np.ndarray, names: list[str]) -> dict[str, Any]:
    per = {}
    for number, name in enumerate(names):
        mine = group[y_true] == number
        per[name] = {
            "accuracy": float(np.mean(group[y_pred[mine]] == number)),
            "fine_accuracy": float(np.mean(y_pred[mine] == y_true[mine])),
            "support": int(mine.sum()),
        }
    return {"test_superclass_accuracy": float(np.mean(group[y_true] == group[y_pred])), "superclass_accuracy": per}


def _history(rng: np.random.Generator, epochs: int = 4) -> list[dict[str, float]]:
    return [
        {
            "epoch": epoch,
            "train_loss": 3.5 / epoch,
            "train_ce": 3.6 / epoch,
            "train_accuracy": 0.2 * epoch,
            "val_loss": 3.4 / epoch + 0.1 * rng.random(),
            "val_accuracy": 0.18 * epoch,
            "lr": 0.001,
            "seconds": 10.0,
        }
        for epoch in range(1, epochs + 1)
    ]


def _reliability(rng: np.random.Generator) -> dict[str, Any]:
    edges = np.linspace(0, 1, 16)
    counts = rng.integers(100, 3000, 15)
    confidence = (edges[:-1] + edges[1:]) / 2
    return {
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "confidence": confidence.tolist(),
        "accuracy": np.clip(confidence - 0.05 + 0.03 * rng.standard_normal(15), 0, 1).tolist(),
        "ece": 0.05,
    }


def _model(
    rng: np.random.Generator,
    key: str,
    title: str,
    skill: float,
    seeds: list[int],
    class_names: list[str],
    group: np.ndarray,
    superclass_names: list[str],
    teachers: list[str],
    method: str | None,
) -> dict[str, Any]:
    y_true = np.repeat(np.arange(len(class_names)), 100)
    big = key in ("resnet50", "vgg16")
    efficiency = {
        "params": 23_528_522 if big else 612_042,
        "trainable_params": 20_490 if big else 612_042,
        "macs": 83_431_424 if big else 4_484_992,
        "checkpoint_bytes": 94_427_519 if big else 2_451_533,
        "latency_ms_batch1": 20.0 if big else 0.7,
        "images_per_s_batch256": 500.0 if big else 7000.0,
        "cpu_threads": 2,
        "image_shape": [3, 32, 32],
    }
    records = []
    for seed in seeds:
        y_pred, top5 = _predictions(
            rng, y_true, skill + 0.01 * rng.standard_normal(), len(superclass_names) if len(superclass_names) > 1 else 0
        )
        calibration = {"ece": 0.05 + 0.02 * rng.random(), "nll": 1.5 + 0.1 * rng.random(), "brier": 0.5}
        records.append(
            {
                "seed": seed,
                "test_accuracy": float(np.mean(y_true == y_pred)),
                "top5_accuracy": top5,
                **_superclass(y_true, y_pred, group, superclass_names),
                **{
                    k: v for k, v in classification_metrics(y_true, y_pred, class_names).items() if k != "test_accuracy"
                },
                "calibration": calibration,
                "epochs_trained": 4,
                "best_epoch": 4,
                "train_seconds": 40.0,
                "efficiency": efficiency,
                "history": _history(rng),
                **({"teacher_agreement": 0.8} if teachers else {}),
            }
        )
    mean_of = lambda dicts: {  # noqa: E731
        k: dicts[0][k] if k == "support" else float(np.mean([d[k] for d in dicts])) for k in dicts[0]
    }
    entry = {
        **_spread([r["test_accuracy"] for r in records], "test_accuracy"),
        **_spread([r["top5_accuracy"] for r in records], "test_top5_accuracy"),
        **_spread([r["test_superclass_accuracy"] for r in records], "test_superclass_accuracy"),
        "superclass_accuracy": {
            name: mean_of([r["superclass_accuracy"][name] for r in records]) for name in superclass_names
        },
        "per_class": {name: mean_of([r["per_class"][name] for r in records]) for name in class_names},
        "confusion_matrix": np.sum([r["confusion_matrix"] for r in records], axis=0).tolist(),
        "calibration": {
            **{m: float(np.mean([r["calibration"][m] for r in records])) for m in ("ece", "nll", "brier")},
            **{f"{m}_std": 0.01 for m in ("ece", "nll", "brier")},
        },
        "reliability": _reliability(rng),
        "efficiency": efficiency,
        "history": records[0]["history"],
        "epochs_trained": 4,
        "best_epoch": 4,
        "train_seconds": 40.0,
        "params": efficiency["params"],
        "trainable_params": efficiency["trainable_params"],
        "title": title,
        "arch": "resnet50" if big else "small_cnn",
        "teachers": teachers,
        "method": method,
        "aggregation": method.split(" · ")[1].split(" ")[0] if method else None,
        "weights": None,
        **({"teacher_agreement": 0.8} if teachers else {}),
        "seeds": records,
    }
    return entry


def _versus(models: dict[str, Any], key: str, other: str) -> dict[str, Any]:
    per_seed = [a["test_accuracy"] - b["test_accuracy"] for a, b in zip(models[key]["seeds"], models[other]["seeds"])]
    diff, _, ci95 = _interval(per_seed)
    images = [diff - 0.012, diff + 0.012]
    low = min(ci95[0], images[0]) if ci95 else images[0]
    high = max(ci95[1], images[1]) if ci95 else images[1]
    outcome = "supported" if low > 0 else "contradicted" if high < 0 else "inconclusive"
    return {"accuracy_diff": diff, "ci95_seeds": ci95, "ci95_images": images, "outcome": outcome}


def generated_results(
    num_classes: int = 100, groups: int = 20, seeds: tuple[int, ...] = (0, 1, 2), figures: bool = False
) -> dict[str, Any]:
    """A schema-3 results.json of 15 models (``BASELINES`` and ``STUDENTS``) on ``num_classes``
    classes in ``groups`` superclasses (none when 0)."""
    rng = np.random.default_rng(20)
    class_names = [f"class_{number:03d}" for number in range(num_classes)]
    superclass_names = [f"superclass_{number:02d}" for number in range(groups)]
    # Superclasses interleave the classes, as CIFAR-100's do its alphabetical class names.
    group = np.arange(num_classes) % groups if groups else np.zeros(num_classes, dtype=int)
    superclasses = (
        {
            name: [class_names[i] for i in np.flatnonzero(group == number)]
            for number, name in enumerate(superclass_names)
        }
        if groups
        else None
    )
    seed_list = list(seeds)
    skills = {"small_cnn": 0.55, "resnet50": 0.7, "vgg16": 0.66}
    models = {}
    for key, title in BASELINES:
        models[key] = _model(
            rng, key, title, skills[key], seed_list, class_names, group, superclass_names or ["all"], [], None
        )
    for number, (key, title, method, teachers) in enumerate(STUDENTS):
        models[key] = _model(
            rng,
            key,
            title,
            0.53 + 0.006 * number,
            seed_list,
            class_names,
            group,
            superclass_names or ["all"],
            teachers,
            method,
        )
    if not groups:
        for model in models.values():
            for record in [model, *model["seeds"]]:
                for name in ("superclass_accuracy", "test_superclass_accuracy", "test_superclass_accuracy_std"):
                    record.pop(name, None)
                record.pop("test_superclass_accuracy_ci95", None)
    distillation = []
    for key in ["small_cnn"] + [s[0] for s in STUDENTS]:
        model = models[key]
        row = {
            "model": key,
            "title": model["title"],
            "method": model["method"] or "none (trained from scratch)",
            "teachers": model["teachers"],
            "test_accuracy": model["test_accuracy"],
            "test_accuracy_std": model["test_accuracy_std"],
            "ece": model["calibration"]["ece"],
            "teacher_agreement": model.get("teacher_agreement"),
        }
        if key != "small_cnn":
            row["vs_scratch"] = _versus(models, key, "small_cnn")
        if key != "kd_resnet50":
            row["vs_kd"] = _versus(models, key, "kd_resnet50")
        distillation.append(row)
    distillation.sort(key=lambda row: -row["test_accuracy"])
    ensemble = [
        np.mean([a["test_accuracy"], b["test_accuracy"]])
        for a, b in zip(models["resnet50"]["seeds"], models["vgg16"]["seeds"])
    ]
    comparison = _versus(models, "small_cnn", "kd_resnet50")
    return {
        "schema_version": 3,
        "study": {
            "name": "generated-100",
            "seeds": seed_list,
            "models": list(models),
            "finished": list(models),
            "unfinished_runs": [],
            "stale_runs": [],
            "class_names": class_names,
            "num_classes": num_classes,
            "superclasses": superclasses,
            "data_source": f"GENERATED results.json ({num_classes} classes), no data",
            "synthetic_data": True,
            "device": "cpu",
            "precision": "fp32",
            "channels_last": False,
            "weights": {},
            "kd": {"temperature": 3.0, "alpha": 0.5, "scale_by_t2": False},
            "train": {"epochs": 4, "batch_size": 64, "patience": 3, "eval_batch_size": 1024, "augment": "none"},
            "evaluation": {
                "ece_bins": 15,
                "bootstrap_resamples": 1000,
                "efficiency": True,
                "figures": figures,
                "latency_repeats": 2,
                "scratch": "small_cnn",
                "kd_reference": "kd_resnet50",
            },
        },
        "models": models,
        "teachers": {
            "ensemble": {
                "members": ["resnet50", "vgg16"],
                **_spread(ensemble, "test_accuracy"),
                "calibration": {
                    "ece": 0.03,
                    "ece_std": 0.01,
                    "nll": 1.2,
                    "nll_std": 0.01,
                    "brier": 0.4,
                    "brier_std": 0.01,
                },
                "seeds": [{"seed": s, "test_accuracy": a, "calibration": {}} for s, a in zip(seed_list, ensemble)],
            }
        },
        "comparisons": [
            {
                "a": "small_cnn",
                "b": "kd_resnet50",
                "claim": "The small CNN trained from scratch is more accurate than KD from ResNet50",
                "seeds": seed_list,
                **comparison,
                "accuracy_diff_per_seed": [],
                "mcnemar_p": [0.5] * len(seed_list),
                "verdict": f"{comparison['outcome'].capitalize()}: generated.",
                "ece_diff": models["small_cnn"]["calibration"]["ece"] - models["kd_resnet50"]["calibration"]["ece"],
            }
        ],
        "distillation": distillation,
    }
