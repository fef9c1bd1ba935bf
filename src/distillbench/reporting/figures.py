"""The study's figures. Each function returns PNG bytes; the caller writes them atomically."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PALETTE = plt.get_cmap("tab10").colors


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def accuracy_bars(names: Sequence[str], accuracies: Sequence[float], reference: dict[str, float] | None = None) -> bytes:
    """Test accuracy per model (%), labelled; reference bars (e.g. the ensemble teacher) hatched."""
    reference = reference or {}
    labels = [*names, *reference]
    values = [100 * a for a in [*accuracies, *reference.values()]]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(labels)), 4.2))
    colors = [PALETTE[i % 10] for i in range(len(names))] + ["white"] * len(reference)
    bars = ax.bar(labels, values, color=colors, edgecolor="black", linewidth=0.8)
    for bar in bars[len(names) :]:
        bar.set_hatch("//")
    for bar, value in zip(bars, values):
        ax.annotate(f"{value:.2f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom",
                    xytext=(0, 3), textcoords="offset points", fontsize=9)  # fmt: skip
    ax.axhline(100 / 10, color="grey", linestyle=":", linewidth=1, label="chance (10 classes)")
    ax.set_ylim(0, 112)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title("Overall test accuracy")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    return _png(fig)


def confusion(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> bytes:
    """Counts in each cell, coloured by the row's share (recall), true class on the rows."""
    counts = np.asarray(matrix)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.2, 6.2))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(counts)):
        for j in range(len(counts)):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7.5,
                    color="white" if share[i, j] > 0.55 else "black")  # fmt: skip
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return _png(fig)


def loss_curves(history: Sequence[dict[str, float]], best_epoch: int, title: str) -> bytes:
    """Train vs validation loss (left) and accuracy (right) per epoch; the restored epoch marked."""
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, label in ((loss_ax, "loss", "Loss"), (acc_ax, "accuracy", "Accuracy")):
        ax.plot(epochs, [r[f"train_{metric}"] for r in history], "o-", ms=3, label="train")
        ax.plot(epochs, [r[f"val_{metric}"] for r in history], "s-", ms=3, label="validation")
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(label)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8, frameon=False)
    loss_ax.set_title(f"{title}: loss")
    acc_ax.set_title(f"{title}: accuracy")
    return _png(fig)


def per_class_accuracy(per_class: dict[str, dict[str, float]], overall: float, title: str) -> bytes:
    names = list(per_class)
    values = [100 * per_class[n]["accuracy"] for n in names]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    bars = ax.bar(names, values, color=PALETTE[0], edgecolor="black", linewidth=0.6)
    for bar, value in zip(bars, values):
        # A white box behind each label: the overall-accuracy line never runs through the digits.
        ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom",
                    xytext=(0, 2), textcoords="offset points", fontsize=8,
                    bbox=dict(facecolor="white", edgecolor="none", pad=0.6))  # fmt: skip
    # zorder 0: drawn behind the bars and the labels.
    ax.axhline(100 * overall, color="black", linestyle="--", linewidth=1, zorder=0, label=f"overall {100 * overall:.2f}%")
    ax.set_ylim(0, 115)  # headroom for the value labels and the legend
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("Accuracy (%)")
    ax.set_title(f"{title}: per-class accuracy")
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    ax.spines[["top", "right"]].set_visible(False)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return _png(fig)
