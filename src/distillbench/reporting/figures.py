"""The plots of the study and sweep reports, and what they share. Each function returns PNG bytes;
the caller writes them atomically, under ``FIGURES_DIR`` of its study or sweep directory. Here: one
model's training curves and reliability diagram, accuracy against cost, the sweep's heatmap; the
figures that grow with the number of classes are in ``class_figures``, those that grow with the
number of models in ``comparison_figures``.

Every model keeps one colour and marker in every figure (``model_style``): ten colours, then the
same ten with the next marker, so that 15 models never share a look.

Titles, model names and class names come from a config or a dataset: every figure draws text as it
is (``text.parse_math`` off), so a ``$`` in a title is a dollar sign, not a mathtext error.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import EngFormatter, NullFormatter  # noqa: E402

FIGURES_DIR = "figures"  # inside a study or sweep directory; the reports link their figures there
PALETTE = plt.get_cmap("tab10").colors
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
Figure = TypeVar("Figure", bound=Callable[..., Any])


def literal_text(draw: Figure) -> Figure:
    """``draw`` with matplotlib's mathtext off for every text it creates."""

    @functools.wraps(draw)
    def drawn(*args: Any, **kwargs: Any) -> Any:
        with plt.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return drawn  # type: ignore[return-value]


def model_style(number: int) -> tuple[tuple[float, float, float], str]:
    """The colour and marker of the study's ``number``-th model (0-based, in the study's order)."""
    return PALETTE[number % len(PALETTE)], MARKERS[(number // len(PALETTE)) % len(MARKERS)]


def png_bytes(fig: plt.Figure) -> bytes:
    """``fig`` as PNG (130 dpi, cropped to what is drawn), the figure closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def as_png(build: Callable[..., plt.Figure]) -> Callable[..., bytes]:
    """``build`` (a figure builder, kept for tests and notebooks that look at the figure) as a
    function of the same arguments that returns its PNG (``png_bytes``), drawn and rendered with
    mathtext off (``literal_text``: text is parsed when the figure is saved, too)."""

    def rendered(*args: Any, **kwargs: Any) -> bytes:
        return png_bytes(build(*args, **kwargs))

    rendered.__doc__ = f"``{build.__name__}`` as PNG."
    return literal_text(rendered)


@literal_text
def accuracy_vs_cost(
    names: Sequence[str],
    accuracies: Sequence[float],
    stds: Sequence[float],
    macs: Sequence[int],
    params: Sequence[int],
    image_size: str,
    numbers: Sequence[int] | None = None,
) -> bytes:
    """Test accuracy against multiply-accumulates per image (log scale); marker area ~ parameters.
    ``numbers``: each model's place in the study, for its ``model_style`` (default: 0, 1, ...)."""
    numbers = list(range(len(names))) if numbers is None else numbers
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    params_arr = np.asarray(params, dtype=float)
    sizes = 40 + 900 * np.sqrt(params_arr / params_arr.max())
    low, high = min(macs), max(macs)
    ax.set_xscale("log")
    ax.set_xlim(low / 3, high * 30)  # room on the right for the labels
    axes_width_points = ax.get_position().width * fig.get_figwidth() * 72
    decades_per_point = np.log10(high * 30 / (low / 3)) / axes_width_points
    log_macs, percent = np.log10(np.asarray(macs, dtype=float)), 100 * np.asarray(accuracies)
    # (left, right in log10 MACs, height in accuracy points) of the labels placed so far
    placed: list[tuple[float, float, float]] = []

    def width(label: str) -> float:
        """A label's width in decades: about 4.6 points per character at 8 points."""
        return 4.6 * max(len(line) for line in label.split("\n")) * decades_per_point

    def collides(left: float, right: float, height: float, own: int) -> bool:
        over_label = any(left < x_right and x_left < right and abs(height - y) < 9 for x_left, x_right, y in placed)
        over_marker = any(
            j != own and left - 0.1 < log_macs[j] < right and abs(height - percent[j]) < 8 for j in range(len(names))
        )
        return over_label or over_marker

    # Models of one cost (e.g. many small-CNN students) share a marker position: more than three
    # of them get one label naming the best, not a stack of labels.
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(len(names)):
        groups.setdefault((macs[i], params[i]), []).append(i)
    labels: dict[int, str] = {}
    for members in groups.values():
        if len(members) > 3:
            best = max(members, key=lambda j: accuracies[j])
            spread = [100 * accuracies[j] for j in members]
            labels[best] = (
                f"{len(members)} models, {params[best] / 1e6:.2f}M params each: "
                f"{min(spread):.1f}-{max(spread):.1f}%\nbest: {names[best]}"
            )
        else:
            labels.update(
                {j: f"{names[j]}\n{params[j] / 1e6:.2f}M params, {100 * accuracies[j]:.1f}%" for j in members}
            )
    for i in range(len(names)):
        color, marker = model_style(numbers[i])
        ax.scatter(
            macs[i],
            100 * accuracies[i],
            s=sizes[i],
            color=color,
            marker=marker,
            edgecolor="black",
            alpha=0.75,
            zorder=3,
        )
        # Drawn over the marker: a big model's marker would hide its own error bar.
        ax.errorbar(
            macs[i],
            100 * accuracies[i],
            yerr=100 * stds[i],
            fmt="none",
            ecolor="black",
            elinewidth=1,
            capsize=3,
            zorder=4,
        )
        if i not in labels:
            continue
        radius_points = np.sqrt(sizes[i] / np.pi)
        left = log_macs[i] + (radius_points + 4) * decades_per_point
        height, right = percent[i], left + width(labels[i])
        while collides(left, right, height, i):  # lift the label until it covers no other label or marker
            height += 9
        placed.append((left, right, height))
        ax.annotate(
            labels[i],
            (macs[i], 100 * accuracies[i]),
            xytext=(10**left, height),
            textcoords="data",
            va="center",
            fontsize=8,
            arrowprops=dict(arrowstyle="-", color="grey", linewidth=0.6) if height != percent[i] else None,
        )
    top = max(100 * (a + s) for a, s in zip(accuracies, stds))
    labels_top = max(height for _, _, height in placed)
    ax.set_ylim(0, max(min(100, top + 15), labels_top + 8))  # lifted labels stay inside the axes
    ax.set_yticks(range(0, 101, 20))
    # Engineering notation (10M, 100M): the log axis' default labels are mathtext, which this
    # module's figures draw as literal text.
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"Multiply-accumulates per {image_size} image (log scale)")
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title("Accuracy vs cost (marker area ~ parameters)")
    ax.grid(True, which="major", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return png_bytes(fig)


@literal_text
def reliability_diagram(bins: dict[str, np.ndarray], title: str, note: str = "") -> bytes:
    """Accuracy per confidence bin (bars) against the bin's mean confidence (red ticks, joined to
    the bar by the gap) and the diagonal of perfect calibration; each bin's share of images below."""
    # From results.json: lists, null where a bin is empty; ``ece`` is that of these very bins.
    ece = bins["ece"]
    bins = {name: np.asarray(values, dtype=float) for name, values in bins.items() if name != "ece"}
    edges, counts = bins["edges"], bins["counts"]
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    filled = counts > 0
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5.4, 6.4), sharex=True, gridspec_kw=dict(height_ratios=[3, 1], hspace=0.08)
    )
    ax.bar(
        centers[filled],
        bins["accuracy"][filled],
        width=width[filled],
        color=PALETTE[0],
        alpha=0.8,
        edgecolor="black",
        linewidth=0.6,
        label="accuracy in bin",
    )
    ax.vlines(centers[filled], bins["accuracy"][filled], bins["confidence"][filled], color=PALETTE[3], linewidth=1.5)
    ax.scatter(
        centers[filled],
        bins["confidence"][filled],
        marker="_",
        s=180,
        linewidths=2.5,
        color=PALETTE[3],
        zorder=3,
        label="mean confidence in bin",
    )
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Accuracy")
    ax.set_title(f"{title}\nreliability: ECE {100 * ece:.2f}%{note}", pad=28)
    ax.legend(fontsize=7.5, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3)
    hist.bar(centers, counts / max(counts.sum(), 1), width=width, color="grey", edgecolor="black", linewidth=0.5)
    hist.set_xlabel("Confidence (max softmax probability)")
    hist.set_ylabel("Share of images")
    for axis in (ax, hist):
        axis.spines[["top", "right"]].set_visible(False)
    return png_bytes(fig)


# Per panel of the loss curves: the history's keys drawn there, with their marker, colour and label.
_CURVES = {
    "ce": (("train_ce", "o", 0, "train"), ("val_loss", "s", 1, "validation"), ("test_loss", "^", 3, "test")),
    "accuracy": (
        ("train_accuracy", "o", 0, "train"),
        ("val_accuracy", "s", 1, "validation"),
        ("test_accuracy", "^", 3, "test"),
    ),
}


@literal_text
def loss_curves(
    histories: dict[int, Sequence[dict[str, float]]],
    best_epochs: dict[int, int | None],
    title: str,
    distilled: bool = False,
) -> bytes:
    """Train vs validation cross-entropy on the hard labels (left) and accuracy (middle) per epoch,
    one line style per seed; the restored epoch marked when there is one seed. A student trains on
    another objective (KD): it gets a third panel of that objective, never drawn against the
    validation cross-entropy it is not comparable with.

    A curve is drawn only where every epoch of the seed has it: a study without a validation split
    (``data.val_size: 0``) draws train only, and says so in the legend; the test curve
    (``train.test_every_epoch``) is drawn when measured (it chose nothing). An empty history (a
    released checkpoint, loaded and not trained) draws empty panels that say so."""
    panels = [("ce", "Cross-entropy (hard labels)"), ("accuracy", "Accuracy")] + (
        [("objective", "")] if distilled else []
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8))
    styles = ["-", "--", ":", "-."]
    trained = any(histories.values())
    validated = trained and all(
        all("val_loss" in row and "val_accuracy" in row for row in history) for history in histories.values()
    )
    for ax, (metric, label) in zip(axes, panels):
        for number, (seed, history) in enumerate(histories.items()):
            epochs = [row["epoch"] for row in history]
            suffix = f" (seed {seed})" if len(histories) > 1 else ""
            style = styles[number % len(styles)]
            if metric == "objective":
                if history and all("train_loss" in row for row in history):
                    ax.plot(
                        epochs,
                        [r["train_loss"] for r in history],
                        style,
                        marker="o",
                        ms=3,
                        color=PALETTE[2],
                        label="train objective" + suffix,
                    )
                continue
            for key, marker, color, split in _CURVES[metric]:
                if not history or not all(key in row for row in history):
                    continue
                if split == "train" and not validated:
                    split = "train (no validation split)"
                elif split == "test":
                    split = "test (measured, chose nothing)"
                ax.plot(
                    epochs,
                    [r[key] for r in history],
                    style,
                    marker=marker,
                    ms=3,
                    color=PALETTE[color],
                    label=split + suffix,
                )
        best = next(iter(best_epochs.values()), None)
        if len(histories) == 1 and trained and best:
            words = "best epoch" if validated else "kept: last epoch"
            ax.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"{words} ({best})")
        if not trained:
            ax.text(0.5, 0.5, "not trained:\na released checkpoint", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(label or "Distillation objective")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.spines[["top", "right"]].set_visible(False)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False)
    axes[0].set_title(f"{title}: cross-entropy")
    axes[1].set_title(f"{title}: accuracy")
    if distilled:
        axes[2].set_title(f"{title}: training objective")
    return png_bytes(fig)


@literal_text
def sweep_heatmap(
    values: np.ndarray,
    rows: Sequence[Any],
    columns: Sequence[Any],
    row_label: str,
    column_label: str,
    selected: tuple[int, int] | None,
    title: str,
) -> bytes:
    """Mean validation accuracy (%) over a grid of two axes, each cell annotated, NaN cells
    (unfinished) blank, the selected cell outlined."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.05 * len(columns), 1.5 + 0.75 * len(rows)))
    percent = 100 * values
    finite = percent[np.isfinite(percent)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    image = ax.imshow(
        np.ma.masked_invalid(percent), cmap="viridis", vmin=low, vmax=high if high > low else low + 1, aspect="auto"
    )
    middle = (low + high) / 2
    for (i, j), value in np.ndenumerate(percent):
        if np.isfinite(value):
            ax.text(
                j, i, f"{value:.1f}", ha="center", va="center", fontsize=9, color="white" if value < middle else "black"
            )
        else:
            ax.text(j, i, "-", ha="center", va="center", fontsize=9, color="grey")
    if selected is not None:
        i, j = selected
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    ax.set_xticks(range(len(columns)), [str(c) for c in columns])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel(column_label)
    ax.set_ylabel(row_label)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="mean validation accuracy (%)", shrink=0.85)
    return png_bytes(fig)
