"""The figures that grow with the number of classes: a model's confusion matrix and its per-class
accuracy, legible from 10 classes to hundreds.

Up to ``COUNTS_UP_TO`` classes the confusion matrix shows its counts in its cells, classes in the
dataset's order. Beyond, it is a heatmap without text in its cells, in the study's class order
(``confusions.class_order``: by superclass, with the superclasses named and outlined, or by
clustering), coloured on a square-root scale so that a 2% confusion is as visible as it is
important; the class names on its axes are as large as the rows allow, every k-th one when they do
not fit. The report adds the most-confused pairs as a table.

The per-class accuracy is sorted, best first; beyond ``COUNTS_UP_TO`` classes only the best and worst
``NAMED`` are named (listed with their values beside the bars, which are too narrow for names).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import PowerNorm

from distillbench.reporting.confusions import COUNTS_UP_TO, row_shares
from distillbench.reporting.figures import PALETTE, as_png, literal_text

NAMED = 5  # classes named at each end of a per-class figure with more than COUNTS_UP_TO classes
SMALLEST_FONT = 5.0  # points: a class name smaller than this is not drawn (every k-th one is)
_POINTS_PER_INCH = 72


def label_step(count: int, inches: float) -> tuple[int, float]:
    """Every how many of ``count`` class names fit along ``inches`` of an axis, and their font size
    (points): the largest size up to 8 that fits a name in its row, every k-th name when even
    ``SMALLEST_FONT`` would not fit."""
    row = inches * _POINTS_PER_INCH / max(count, 1)  # points per class
    size = min(8.0, 0.85 * row)
    if size >= SMALLEST_FONT:
        return 1, size
    step = math.ceil(SMALLEST_FONT / (0.85 * row))
    return step, min(7.0, 0.85 * row * step)


def superclass_spans(
    ordered_names: Sequence[str], superclasses: Mapping[str, Sequence[str]] | None
) -> list[tuple[str, int, int]]:
    """(superclass, first position, position after its last) of each superclass in the ordered
    classes, when the order keeps every superclass together; else none."""
    if not superclasses:
        return []
    of = {name: group for group, members in superclasses.items() for name in members}
    spans: list[tuple[str, int, int]] = []
    for position, name in enumerate(ordered_names):
        group = of.get(name)
        if spans and spans[-1][0] == group:
            spans[-1] = (group, spans[-1][1], position + 1)
        else:
            spans.append((group, position, position + 1))
    together = all(group is not None for group, _, _ in spans) and len(spans) == len(set(superclasses))
    return spans if together else []


def _counts_figure(counts: np.ndarray, class_names: Sequence[str], title: str) -> plt.Figure:
    """Up to ``COUNTS_UP_TO`` classes: every cell's count, coloured by the row's share (recall)."""
    count = len(class_names)
    share = row_shares(counts)
    fig, ax = plt.subplots(figsize=(max(7.2, 0.36 * count + 3.6), max(6.2, 0.36 * count + 2.6)))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(count):
        for j in range(count):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=7.5,
                color="white" if share[i, j] > 0.55 else "black",
            )
    ticks = np.arange(count)
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return fig


def _heatmap_figure(
    counts: np.ndarray,
    class_names: Sequence[str],
    title: str,
    order: Sequence[int],
    order_words: str,
    superclasses: Mapping[str, Sequence[str]] | None,
) -> plt.Figure:
    """More than ``COUNTS_UP_TO`` classes: a heatmap in ``order``, no text in its cells."""
    count = len(class_names)
    order = list(order)
    share = row_shares(counts)[np.ix_(order, order)]
    names = [class_names[i] for i in order]
    spans = superclass_spans(names, superclasses)
    side = float(np.clip(0.085 * count, 6.0, 12.0))  # the matrix, inches
    # The axes fill ``side`` inches; names, superclasses and the colour bar lie outside, kept by the
    # tight crop of ``png_bytes``.
    fig = plt.figure(figsize=(side, side))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    image = ax.imshow(share, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0), interpolation="nearest")
    step, size = label_step(count, side)
    shown = np.arange(0, count, step)
    ax.set_xticks(shown, [names[i] for i in shown], rotation=90, fontsize=size)
    ax.set_yticks(shown, [names[i] for i in shown], fontsize=size)
    ax.tick_params(length=2, pad=1)
    every = f" (one name in {step})" if step > 1 else ""
    ax.set_xlabel(f"Predicted class{every}")
    ax.set_ylabel(f"True class{every}")
    for group, start, end in spans:
        for edge in (start - 0.5, end - 0.5):
            ax.axhline(edge, color="black", linewidth=0.5, alpha=0.6)
            ax.axvline(edge, color="black", linewidth=0.5, alpha=0.6)
        room = 0.85 * side * _POINTS_PER_INCH * (end - start) / count  # points of height for its name
        if room >= SMALLEST_FONT:  # a superclass too thin for its name is outlined only
            ax.annotate(
                group,
                xy=(1.0, (start + end - 1) / 2),
                xycoords=("axes fraction", "data"),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=min(8.0, room),
            )
    ax.set_title(f"{title}\n{count} classes {order_words}; colour: share of the true class", fontsize=10)
    # The colour bar below the x tick labels (rotated names, about 0.6 of the font size per character)
    # and the axis label.
    below = (0.6 * size * max(len(names[i]) for i in shown) + 36) / (side * _POINTS_PER_INCH)
    bar_axes = ax.inset_axes((0.2, -below - 0.02, 0.6, 0.015))
    colorbar = fig.colorbar(image, cax=bar_axes, orientation="horizontal")
    colorbar.set_label("share of the true class (square-root scale: small confusions stay visible)", fontsize=8)
    colorbar.set_ticks([0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0])
    colorbar.ax.tick_params(labelsize=7)
    return fig


@literal_text
def confusion_figure(
    matrix: Sequence[Sequence[int]],
    class_names: Sequence[str],
    title: str,
    order: Sequence[int] | None = None,
    order_words: str = "in the dataset's order",
    superclasses: Mapping[str, Sequence[str]] | None = None,
) -> plt.Figure:
    """The confusion matrix (true class on the rows) as a figure: counts in cells up to
    ``COUNTS_UP_TO`` classes, beyond a heatmap in ``order`` (``order_words`` says which), superclasses
    outlined and named when ``order`` keeps them together."""
    counts = np.asarray(matrix, dtype=np.int64)
    if len(class_names) <= COUNTS_UP_TO:
        return _counts_figure(counts, class_names, title)
    order = range(len(class_names)) if order is None else order
    return _heatmap_figure(counts, class_names, title, order, order_words, superclasses)


confusion = as_png(confusion_figure)


@literal_text
def per_class_figure(per_class: dict[str, dict[str, float]], overall: float, title: str) -> plt.Figure:
    """Per-class accuracy (%, the mean over seeds), sorted best first, with the overall accuracy.
    Up to ``COUNTS_UP_TO`` classes every bar is named and valued; beyond, the bars are ranks and the
    best and worst ``NAMED`` are coloured and listed, with their values, beside them."""
    ranked = sorted(per_class, key=lambda name: -per_class[name]["accuracy"])
    values = [100 * per_class[name]["accuracy"] for name in ranked]
    count = len(ranked)
    if count <= COUNTS_UP_TO:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        bars = ax.bar(ranked, values, color=PALETTE[0], edgecolor="black", linewidth=0.6)
        for bar, value in zip(bars, values):
            # A white box behind each label: the overall-accuracy line never runs through the digits.
            ax.annotate(
                f"{value:.1f}",
                (bar.get_x() + bar.get_width() / 2, value),
                ha="center",
                va="bottom",
                xytext=(0, 2),
                textcoords="offset points",
                fontsize=8,
                bbox=dict(facecolor="white", edgecolor="none", pad=0.6),
            )
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    else:
        fig, ax = plt.subplots(figsize=(float(np.clip(0.08 * count + 3, 8.5, 16)), 4.2))
        best, worst = range(min(NAMED, count)), range(max(count - NAMED, NAMED), count)
        colors = [PALETTE[2] if r in best else PALETTE[1] if r in worst else PALETTE[0] for r in range(count)]
        ax.bar(np.arange(1, count + 1), values, width=0.85, color=colors, edgecolor="black", linewidth=0.25)
        for ranks, corner, alignment, label in (
            (best, (0.02, 0.98), "left", f"best {len(best)}"),
            (worst, (0.98, 0.98), "right", f"worst {len(worst)}"),
        ):
            listed = "\n".join(f"{r + 1}. {ranked[r]}: {values[r]:.1f}%" for r in ranks)
            ax.text(
                *corner,
                f"{label}\n{listed}",
                transform=ax.transAxes,
                ha=alignment,
                va="top",
                fontsize=7.5,
                color="black",
                bbox=dict(facecolor="white", edgecolor=colors[ranks[0]], linewidth=1.2, pad=3),
            )
        ax.set_xlim(0.3, count + 0.7)
        ax.set_xlabel(f"Rank among the {count} classes (1: the most accurate)")
    # zorder 0: drawn behind the bars and the labels.
    ax.axhline(
        100 * overall, color="black", linestyle="--", linewidth=1, zorder=0, label=f"overall {100 * overall:.2f}%"
    )
    # Headroom: for the value labels, or for the lists above the tallest bars (their top third).
    ax.set_ylim(0, 115 if count <= COUNTS_UP_TO else max(115.0, max(values) / 0.66))
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("Accuracy (%)")
    ax.set_title(f"{title}: per-class accuracy, best first")
    ax.legend(fontsize=8, frameon=False, loc="upper center")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


per_class_accuracy = as_png(per_class_figure)
