"""Which figures a study's report draws, from ``results.json`` only, and where they go: the overall
accuracy, accuracy against cost (when efficiency was measured), the distillation forest (when there
are methods to compare with the model trained from scratch), and four figures per model. None when
the study says ``evaluation.figures: false``.

Every model keeps its colour and marker (``figures.model_style``, by its place in the study) from
one figure to the next, and every confusion heatmap shows the classes in one order for the study
(``confusions.class_order``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillbench.atomic import write_bytes
from distillbench.reporting.class_figures import confusion, per_class_accuracy
from distillbench.reporting.comparison_figures import accuracy_dots, difference_forest
from distillbench.reporting.confusions import COUNTS_UP_TO, class_order
from distillbench.reporting.figures import FIGURES_DIR, accuracy_vs_cost, loss_curves, reliability_diagram
from distillbench.reporting.text import image_size

# The distillation methods that are controls (``training/distill/controls.py``): the forest marks them.
CONTROL_METHODS = ("label_smoothing", "shuffled_teacher")


def figure_paths(key: str) -> dict[str, str]:
    """Figure file names of one model, relative to ``figures/``."""
    return {kind: f"{key}_{kind}.png" for kind in ("confusion", "loss", "per_class", "reliability")}


def figures_drawn(results: dict[str, Any]) -> bool:
    """Whether the study draws its figures (``evaluation.figures``; results.json written before it existed: yes)."""
    return bool((results["study"].get("evaluation") or {}).get("figures", True))


def num_classes(results: dict[str, Any]) -> int:
    """The study's number of classes (``study.num_classes``; schema 2: its class names counted)."""
    study = results["study"]
    return study.get("num_classes") or len(study["class_names"])


def is_control(row: dict[str, Any]) -> bool:
    """Whether a ``distillation`` row is a control (its ``control`` flag, else its method's name)."""
    if "control" in row:
        return bool(row["control"])
    return str(row.get("method", "")).split(" ")[0] in CONTROL_METHODS


def single_labels(titles: dict[str, str]) -> dict[str, str]:
    """Per model key, its title; the key added (``title [key]``) only where titles repeat."""
    repeated = {title for title in titles.values() if list(titles.values()).count(title) > 1}
    return {key: f"{title} [{key}]" if title in repeated else title for key, title in titles.items()}


def write_figures(root: Path, results: dict[str, Any]) -> None:
    """Every figure of the study's report, as PNG files in ``root/figures``."""
    keys = list(results["models"])
    if not keys or not figures_drawn(results):
        return
    folder = Path(root) / FIGURES_DIR
    write_study_figures(folder, results)
    order = class_order(results) if num_classes(results) > COUNTS_UP_TO else None
    for key in keys:
        write_model_figures(folder, results, key, order)


def write_study_figures(folder: Path, results: dict[str, Any]) -> None:
    """The figures that put the models side by side."""
    models = results["models"]
    keys = list(models)
    labels = single_labels({key: model["title"] for key, model in models.items()})
    teachers = results["teachers"]
    png = accuracy_dots(
        [labels[k] for k in keys] + [f"{name} teacher" for name in teachers],
        [[s["test_accuracy"] for s in models[k]["seeds"]] for k in keys]
        + [[s["test_accuracy"] for s in t["seeds"]] for t in teachers.values()],
        [models[k]["test_accuracy_ci95"] for k in keys] + [t["test_accuracy_ci95"] for t in teachers.values()],
        num_classes(results),
        [False] * len(keys) + [True] * len(teachers),
    )
    write_bytes(folder / "accuracy.png", png)
    costed = [k for k in keys if models[k].get("efficiency")]
    if costed:
        png = accuracy_vs_cost(
            [labels[k] for k in costed],
            [models[k]["test_accuracy"] for k in costed],
            [models[k]["test_accuracy_std"] or 0.0 for k in costed],
            [models[k]["efficiency"]["macs"] for k in costed],
            [models[k]["efficiency"]["params"] for k in costed],
            image_size(models[costed[0]]["efficiency"]),
            [keys.index(k) for k in costed],
        )
        write_bytes(folder / "accuracy_vs_cost.png", png)
    methods = [m for m in results.get("distillation") or [] if "vs_scratch" in m]
    if methods:
        scratch = {m["model"]: m.get("scratch", results["study"]["evaluation"]["scratch"]) for m in methods}
        baselines = set(scratch.values())
        seeds = min(min(len(models[m["model"]]["seeds"]), len(models[scratch[m["model"]]]["seeds"])) for m in methods)
        # One baseline names itself; several (one per student architecture) are each student's own.
        reference = labels[next(iter(baselines))] if len(baselines) == 1 else "each student's own scratch model"
        png = difference_forest(
            [labels.get(m["model"], m["title"]) for m in methods],
            [m["vs_scratch"]["accuracy_diff"] for m in methods],
            [m["vs_scratch"]["ci95_seeds"] for m in methods],
            [m["vs_scratch"]["ci95_images"] for m in methods],
            [m["vs_scratch"]["outcome"] for m in methods],
            [is_control(m) for m in methods],
            reference,
            seeds,
        )
        write_bytes(folder / "distillation_forest.png", png)


def write_model_figures(
    folder: Path, results: dict[str, Any], key: str, order: tuple[list[int], str] | None = None
) -> None:
    """One model's confusion matrix (in the classes' ``order`` and its words, for a heatmap), loss
    curves, per-class accuracy and reliability diagram; with several seeds, their test predictions
    pooled."""
    model, names = results["models"][key], figure_paths(key)
    title, seeds = model["title"], model["seeds"]
    pooled = f", {len(seeds)} seeds pooled" if len(seeds) > 1 else ""
    study = results["study"]
    classes, words = order if order is not None else (None, "in the dataset's order")
    png = confusion(
        model["confusion_matrix"],
        study["class_names"],
        f"{title} (test{pooled})",
        classes,
        words,
        study.get("superclasses"),
    )
    write_bytes(folder / names["confusion"], png)
    histories = {s["seed"]: s["history"] for s in seeds}
    best_epochs = {s["seed"]: s["best_epoch"] for s in seeds}
    write_bytes(folder / names["loss"], loss_curves(histories, best_epochs, title, distilled=bool(model["teachers"])))
    write_bytes(folder / names["per_class"], per_class_accuracy(model["per_class"], model["test_accuracy"], title))
    note = ""
    if len(seeds) > 1:
        mean_ece = f"; mean of the {len(seeds)} seeds' ECE {100 * model['calibration']['ece']:.2f}%"
        note = f" ({len(seeds)} seeds pooled{mean_ece})"
    write_bytes(folder / names["reliability"], reliability_diagram(model["reliability"], title, note))
