"""Which figures a study's report draws, from ``results.json`` only, and where they go: the overall
accuracy, accuracy against cost (when efficiency was measured), the distillation forest (when there
are methods to compare with the model trained from scratch), and four figures per model. None when
the study says ``evaluation.figures: false``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillbench.atomic import write_bytes
from distillbench.reporting.figures import (
    FIGURES_DIR,
    accuracy_bars,
    accuracy_vs_cost,
    confusion,
    difference_forest,
    loss_curves,
    per_class_accuracy,
    reliability_diagram,
)
from distillbench.reporting.text import image_size


def figure_paths(key: str) -> dict[str, str]:
    """Figure file names of one model, relative to ``figures/``."""
    return {kind: f"{key}_{kind}.png" for kind in ("confusion", "loss", "per_class", "reliability")}


def figures_drawn(results: dict[str, Any]) -> bool:
    """Whether the study draws its figures (``evaluation.figures``; results.json written before it existed: yes)."""
    return bool((results["study"].get("evaluation") or {}).get("figures", True))


def write_figures(root: Path, results: dict[str, Any]) -> None:
    """Every figure of the study's report, as PNG files in ``root/figures``."""
    keys = list(results["models"])
    if not keys or not figures_drawn(results):
        return
    folder = Path(root) / FIGURES_DIR
    _write_study_figures(folder, results)
    for key in keys:
        _write_model_figures(folder, results, key)


def _write_study_figures(folder: Path, results: dict[str, Any]) -> None:
    """The figures that put the models side by side."""
    models = results["models"]
    keys = list(models)
    teachers = {f"{name} teacher": [s["test_accuracy"] for s in t["seeds"]] for name, t in results["teachers"].items()}
    per_seed = [[s["test_accuracy"] for s in models[k]["seeds"]] for k in keys]
    num_classes = len(results["study"]["class_names"])
    write_bytes(
        folder / "accuracy.png", accuracy_bars([models[k]["title"] for k in keys], per_seed, teachers, num_classes)
    )
    costed = [models[k] for k in keys if models[k].get("efficiency")]
    if costed:
        png = accuracy_vs_cost(
            [m["title"] for m in costed],
            [m["test_accuracy"] for m in costed],
            [m["test_accuracy_std"] or 0.0 for m in costed],
            [m["efficiency"]["macs"] for m in costed],
            [m["efficiency"]["params"] for m in costed],
            image_size(costed[0]["efficiency"]),
        )
        write_bytes(folder / "accuracy_vs_cost.png", png)
    methods = [m for m in results.get("distillation") or [] if "vs_scratch" in m]
    if methods:
        png = difference_forest(
            [f"{m['title']} ({m['method']})" for m in methods],
            [m["vs_scratch"]["accuracy_diff"] for m in methods],
            [m["vs_scratch"]["ci95_seeds"] for m in methods],
            [m["vs_scratch"]["ci95_images"] for m in methods],
            models[results["study"]["evaluation"]["scratch"]]["title"],
        )
        write_bytes(folder / "distillation_forest.png", png)


def _write_model_figures(folder: Path, results: dict[str, Any], key: str) -> None:
    """One model's confusion matrix, loss curves, per-class accuracy and reliability diagram; with
    several seeds, their test predictions pooled."""
    model, names = results["models"][key], figure_paths(key)
    title, seeds = model["title"], model["seeds"]
    pooled = f", {len(seeds)} seeds pooled" if len(seeds) > 1 else ""
    write_bytes(
        folder / names["confusion"],
        confusion(model["confusion_matrix"], results["study"]["class_names"], f"{title} (test{pooled})"),
    )
    histories = {s["seed"]: s["history"] for s in seeds}
    best_epochs = {s["seed"]: s["best_epoch"] for s in seeds}
    write_bytes(folder / names["loss"], loss_curves(histories, best_epochs, title, distilled=bool(model["teachers"])))
    write_bytes(folder / names["per_class"], per_class_accuracy(model["per_class"], model["test_accuracy"], title))
    note = ""
    if len(seeds) > 1:
        mean_ece = f"; mean of the {len(seeds)} seeds' ECE {100 * model['calibration']['ece']:.2f}%"
        note = f" ({len(seeds)} seeds pooled{mean_ece})"
    write_bytes(folder / names["reliability"], reliability_diagram(model["reliability"], title, note))
