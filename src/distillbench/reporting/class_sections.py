"""The parts of a study's report that grow with the number of classes, written to stay readable
from CIFAR-10's 10 classes to CIFAR-100's 100 and beyond: Table 2 (per-class precision, recall, F1),
the per-superclass accuracy table, each model's most-confused pairs, and ``per_class.csv``, which
holds every per-class number the tables summarise.

Table 2 is in %, like every accuracy of the report. Recall is the class's accuracy (correct /
support), so it is given once. Up to ``WIDE_UP_TO`` models it is the paper's one table (a class
per row, P, R and F1 per model: 16 columns at most); beyond, one table per model. In HTML its
tables collapse when there are more than ``COLLAPSE_ABOVE_MODELS`` models or ``COUNTS_UP_TO`` classes.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from distillbench.reporting.confusions import COUNTS_UP_TO, most_confused
from distillbench.reporting.html import Block
from distillbench.reporting.text import MAX_TABLE_COLUMNS, markdown_table, split_table

PER_CLASS_CSV = "per_class.csv"  # beside report.md
METRICS = ("precision", "recall", "f1")
WIDE_UP_TO = (MAX_TABLE_COLUMNS - 1) // len(METRICS)  # models: a class column and P, R, F1 per model
COLLAPSE_ABOVE_MODELS = 6  # in HTML, per-model sections and Table 2 collapse above this many models


def collapses(results: dict[str, Any]) -> bool:
    """Whether the HTML page collapses the per-class tables: many models, or many classes."""
    return len(results["models"]) > COLLAPSE_ABOVE_MODELS or len(results["study"]["class_names"]) > COUNTS_UP_TO


def _support_words(models: list[dict[str, Any]]) -> str:
    supports = [metrics["support"] for metrics in models[0]["per_class"].values()]
    if min(supports) == max(supports):
        return f"Every class has {supports[0]:,} test images."
    return f"A class has {min(supports):,} to {max(supports):,} test images."


def _superclass_of(results: dict[str, Any]) -> dict[str, str]:
    superclasses = results["study"].get("superclasses") or {}
    return {name: group for group, members in superclasses.items() for name in members}


def per_class_blocks(results: dict[str, Any]) -> list[Block]:
    """Table 2: its heading and explanation, then its table (up to ``WIDE_UP_TO`` models) or one
    table per model, collapsed in HTML when ``collapses``."""
    models = list(results["models"].values())
    names = results["study"]["class_names"]
    seeds = len(models[0]["seeds"])
    intro = [
        "## Table 2: per-class precision, recall and F1 (%)",
        "",
        "From the saved test predictions"
        + (f", the mean over {seeds} seeds" if seeds > 1 else "")
        + "; in %, like the accuracies. Recall is the class's accuracy (correct / support), so it is given once. "
        + _support_words(models)
        + f" Every number, each seed's too, is in `{PER_CLASS_CSV}` beside this report (as fractions).",
        "",
    ]
    collapsed = collapses(results)
    if len(models) <= WIDE_UP_TO:
        header = ["Class"] + [f"{model['title']} {label}" for model in models for label in ("P", "R", "F1")]
        rows = [
            [name] + [f"{100 * model['per_class'][name][metric]:.1f}" for model in models for metric in METRICS]
            for name in names
        ]
        table = [markdown_table(header, rows), ""]
        if not collapsed:
            return [Block("\n".join(intro + table))]
        return [Block("\n".join(intro)), Block("\n".join([f"### Table 2, {len(names)} classes", "", *table]), True)]
    superclass = _superclass_of(results)
    blocks = [Block("\n".join(intro))]
    for key, model in results["models"].items():
        header = ["Class", *(["Superclass"] if superclass else []), "Precision", "Recall", "F1"]
        rows = [
            [name, *([superclass.get(name, "")] if superclass else [])]
            + [f"{100 * model['per_class'][name][metric]:.1f}" for metric in METRICS]
            for name in names
        ]
        text = [
            f"### {model['title']} (`{key}`)",
            "",
            markdown_table(header, rows, "l" * (len(header) - 3) + "rrr"),
            "",
        ]
        blocks.append(Block("\n".join(text), collapsed))
    return blocks


def _pair(superclass: float, fine: float) -> str:
    """``superclass / class`` accuracy (%); no-break spaces keep the pair on one line in HTML."""
    return f"{100 * superclass:.1f}\u00a0/\u00a0{100 * fine:.1f}"


def superclass_section(results: dict[str, Any]) -> list[str]:
    """Per superclass and model: the share of the superclass's test images predicted in it, and the
    share predicted exactly; the first row, every superclass together. None without superclasses."""
    superclasses = results["study"].get("superclasses")
    models = [model for model in results["models"].values() if model.get("superclass_accuracy")]
    if not superclasses or not models:
        return []
    header = ["Superclass"] + [model["title"] for model in models]
    rows = [["**all**"] + [_pair(model["test_superclass_accuracy"], model["test_accuracy"]) for model in models]]
    for group in superclasses:
        cells = []
        for model in models:
            entry = model["superclass_accuracy"].get(group)
            cells.append("-" if entry is None else _pair(entry["accuracy"], entry["fine_accuracy"]))
        rows.append([group, *cells])
    seeds = len(models[0]["seeds"])
    return [
        "## Per-superclass accuracy (%)",
        "",
        f"The {len(superclasses)} superclasses of the dataset, each over its test images"
        + (f", the mean over {seeds} seeds" if seeds > 1 else "")
        + ": *superclass accuracy / class accuracy*, the share of its images predicted as one of its classes, "
        "then the share predicted as their exact class. A model that mistakes a maple for an oak is right about "
        "the superclass (trees): the gap between the two numbers is the confusion within the superclass.",
        "",
        *split_table(header, rows),
        "",
    ]


def most_confused_lines(results: dict[str, Any], key: str) -> list[str]:
    """A model's most-confused pairs of classes (a table), when its confusion matrix has too many
    classes to read its counts (more than ``COUNTS_UP_TO``); else none."""
    names = results["study"]["class_names"]
    if len(names) <= COUNTS_UP_TO:
        return []
    model = results["models"][key]
    superclass = _superclass_of(results)
    rows = []
    for rank, (true, predicted, count, share) in enumerate(most_confused(model["confusion_matrix"]), 1):
        same = (
            [("yes" if superclass.get(names[true]) == superclass.get(names[predicted]) else "no")] if superclass else []
        )
        rows.append([str(rank), names[true], names[predicted], f"{count:,}", f"{100 * share:.1f}", *same])
    if not rows:
        return ["No test image of this model was misclassified.", ""]
    seeds = len(model["seeds"])
    header = [
        "Rank",
        "True class",
        "Predicted as",
        "Images",
        "% of the true class",
        *(["Same superclass"] if superclass else []),
    ]
    return [
        f"**Most-confused pairs:** the {len(rows)} largest off-diagonal cells of the confusion matrix, "
        + ("images summed over the " + f"{seeds} seeds' test predictions." if seeds > 1 else "test images."),
        "",
        markdown_table(header, rows, "rllrr" + "l" * bool(superclass)),
        "",
    ]


def per_class_csv(results: dict[str, Any]) -> str:
    """Every per-class number, one row per model, seed and class: ``seed`` is ``mean`` for the mean
    over seeds (Table 2's numbers), then each seed's; precision, recall and F1 as fractions (0-1)."""
    superclass = _superclass_of(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "title", "seed", "class", *(["superclass"] if superclass else []), *METRICS, "support"])
    for key, model in results["models"].items():
        for seed, per_class in [("mean", model["per_class"])] + [(s["seed"], s["per_class"]) for s in model["seeds"]]:
            for name, metrics in per_class.items():
                writer.writerow(
                    [key, model["title"], seed, name, *([superclass.get(name, "")] if superclass else [])]
                    + [repr(float(metrics[metric])) for metric in METRICS]
                    + [metrics["support"]]
                )
    return buffer.getvalue()
