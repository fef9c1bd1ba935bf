"""The figures that grow with the number of models: every model's test accuracy, and each
distillation method's difference from the model trained from scratch. One row per model, sorted,
the axis zoomed to the data, so that 1-2 point gaps between 15 models stay visible.

An interval over seeds is a Student-t interval: with two seeds it has one degree of freedom and is
about nine times the seeds' spread, wide enough to hide every difference. Such intervals (and any
over fewer than ``INFORMATIVE_SEEDS`` seeds) do not set the axis; where they run past it they are
cut at its edge and end in an arrow, and the figure says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from distillbench.reporting.figures import PALETTE, as_png, literal_text, model_style

INFORMATIVE_SEEDS = 3  # seeds an interval over seeds needs before it may set a figure's axis
OUTCOME_COLORS = {"supported": PALETTE[2], "contradicted": PALETTE[3], "inconclusive": "dimgrey"}


def _limits(values: list[float], floor: float, ceiling: float, minimum_span: float) -> tuple[float, float]:
    """An axis range around ``values`` with a margin, at least ``minimum_span`` wide, within
    [``floor``, ``ceiling``]."""
    low, high = min(values), max(values)
    if high - low < minimum_span:
        middle = (low + high) / 2
        low, high = middle - minimum_span / 2, middle + minimum_span / 2
    margin = 0.06 * (high - low)
    return max(floor, low - margin), min(ceiling, high + margin)


def _interval(ax: plt.Axes, low: float, high: float, row: float, limits: tuple[float, float], **style: object) -> bool:
    """The interval [low, high] on ``row``, cut at ``limits`` with an arrow where it runs past;
    whether it was cut."""
    left, right = max(low, limits[0]), min(high, limits[1])
    if right < left:  # wholly outside: an arrow at the edge it lies beyond
        left = right = limits[0] if high < limits[0] else limits[1]
    ax.plot([left, right], [row, row], solid_capstyle="butt", **style)
    color, alpha = style.get("color", "black"), style.get("alpha", 1.0)
    for end, beyond, marker in ((left, low < limits[0], "<"), (right, high > limits[1], ">")):
        if beyond:
            ax.plot(end, row, marker=marker, color=color, alpha=max(alpha, 0.6), markersize=5, clip_on=False, zorder=5)
    return low < limits[0] or high > limits[1]


def _seed_note(seeds: int, cut: bool) -> str:
    """The title's second line: what the interval over seeds is worth, and whether some were cut."""
    if seeds <= 1:
        return "1 seed: no interval over seeds"
    note = (
        f"{seeds} seeds: the interval over seeds (t, {seeds - 1} degree of freedom) is too wide to inform, drawn faint"
        if seeds < INFORMATIVE_SEEDS
        else f"95% interval over {seeds} seeds"
    )
    return note + ("\nintervals that run past the axis are cut and end in an arrow" if cut else "")


@literal_text
def accuracy_figure(
    names: Sequence[str],
    per_seed: Sequence[Sequence[float]],
    intervals: Sequence[Sequence[float] | None],
    num_classes: int,
    references: Sequence[bool] | None = None,
) -> plt.Figure:
    """Test accuracy (%) per model, best first: the mean over seeds (the model's marker), its 95%
    interval over seeds (a line, clipped to 0-100) and each seed (a dot), with one seed its accuracy
    alone. Reference rows (an ensemble teacher) are hollow. The axis is zoomed to the data; chance
    (1/``num_classes``) is drawn when it lies near, and named in the legend when it does not."""
    references = references or [False] * len(names)
    seeds = max(len(values) for values in per_seed)
    percent = [100 * np.asarray(values, dtype=float) for values in per_seed]
    means = [float(values.mean()) for values in percent]
    order = sorted(range(len(names)), key=lambda i: -means[i])
    models = [i for i in range(len(names)) if not references[i]]
    styles = {i: model_style(number) for number, i in enumerate(models)}  # references: hollow, black
    shown = [v for values in percent for v in values] + means
    if seeds >= INFORMATIVE_SEEDS:
        shown += [100 * end for interval in intervals if interval is not None for end in interval]
    limits = _limits(shown, 0.0, 100.0, minimum_span=2.0)
    chance = 100 / num_classes
    near = limits[0] - (limits[1] - limits[0]) <= chance <= limits[1]  # including it at most halves the zoom
    if near:
        limits = (min(limits[0], chance - 0.03 * (limits[1] - limits[0])), limits[1])
    fig, ax = plt.subplots(figsize=(8.0, 1.3 + 0.36 * len(names)))
    cut = False
    for row, i in enumerate(reversed(order)):  # the best on top
        color, marker = styles.get(i, ("black", "o"))
        if intervals[i] is not None:
            low, high = (100 * max(intervals[i][0], 0.0), 100 * min(intervals[i][1], 1.0))
            faint = seeds < INFORMATIVE_SEEDS
            cut |= _interval(
                ax, low, high, row, limits, color="black", linewidth=1.0 if faint else 1.4, alpha=0.3 if faint else 0.7
            )
        if seeds > 1:
            ax.scatter(percent[i], [row] * len(percent[i]), s=12, color="black", alpha=0.55, zorder=3, linewidths=0)
        ax.scatter(
            means[i],
            row,
            s=70,
            marker=marker,
            facecolor="white" if references[i] else color,
            edgecolor="black",
            linewidths=1.2 if references[i] else 0.6,
            zorder=4,
        )
        ax.annotate(
            f"{means[i]:.2f}",
            (1.0, row),
            xycoords=blended_transform_factory(ax.transAxes, ax.transData),
            xytext=(10, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(names)), [names[i] for i in reversed(order)])
    for label, i in zip(ax.get_yticklabels(), reversed(order)):
        if references[i]:
            label.set_fontstyle("italic")
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set_xlim(*limits)
    mean = "mean over seeds" if seeds > 1 else "test accuracy (one seed)"
    handles = [Line2D([], [], marker="o", color="grey", markeredgecolor="black", linestyle="none", label=mean)]
    if seeds > 1:
        handles.append(Line2D([], [], marker="o", color="black", markersize=3, linestyle="none", label="one seed"))
    if any(interval is not None for interval in intervals):
        handles.append(Line2D([], [], color="black", linewidth=1.4, label="95% interval over seeds"))
    if any(references):
        handles.append(
            Line2D([], [], marker="o", color="white", markeredgecolor="black", linestyle="none", label="reference")
        )
    if near:
        ax.axvline(chance, color="grey", linestyle=":", linewidth=1)
        handles.append(Line2D([], [], color="grey", linestyle=":", label=f"chance ({chance:.3g}%)"))
    else:
        side = "left" if chance < limits[0] else "right"
        handles.append(Line2D([], [], color="none", label=f"chance: {chance:.3g}%, off the {side} of this zoomed axis"))
    ax.legend(
        handles=handles,
        fontsize=7.5,
        frameon=False,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1 - 0.9 / len(names)),
        ncol=3,
    )
    ax.set_title(f"Test accuracy (%), best first\n{_seed_note(seeds, cut)}", fontsize=10)
    ax.set_xlabel("Test accuracy (%), zoomed to the data")
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


accuracy_dots = as_png(accuracy_figure)


@literal_text
def forest_figure(
    names: Sequence[str],
    differences: Sequence[float],
    seed_intervals: Sequence[Sequence[float] | None],
    image_intervals: Sequence[Sequence[float] | None],
    outcomes: Sequence[str],
    controls: Sequence[bool],
    reference: str,
    seeds: int,
) -> plt.Figure:
    """Each model's test-accuracy difference from ``reference`` (points): the mean over seeds (a
    dot, hollow for a control), the 95% interval over seeds (a thick light bar; see the module
    docstring for 1 and 2 seeds) and, drawn on top, the bootstrap interval over test images (a thin
    dark line with caps). The outcome (supported / contradicted / inconclusive for "more accurate
    than the reference") colours the row and is written at its end; the zero line is no difference."""
    count = len(names)
    shown = [0.0] + [100 * d for d in differences]
    shown += [100 * end for interval in image_intervals if interval is not None for end in interval]
    if seeds >= INFORMATIVE_SEEDS:
        shown += [100 * end for interval in seed_intervals if interval is not None for end in interval]
    limits = _limits(shown, -100.0, 100.0, minimum_span=2.0)
    fig, ax = plt.subplots(figsize=(8.0, 1.6 + 0.42 * count))
    rows = np.arange(count)[::-1]
    cut = False
    for row, diff, seed, image, outcome, control in zip(
        rows, differences, seed_intervals, image_intervals, outcomes, controls
    ):
        color = OUTCOME_COLORS.get(outcome, "dimgrey")
        if seed is not None:
            cut |= _interval(ax, 100 * seed[0], 100 * seed[1], row, limits, color=color, linewidth=9, alpha=0.25)
        if image is not None:
            cut |= _interval(ax, 100 * image[0], 100 * image[1], row, limits, color=color, linewidth=1.6, zorder=3)
            for end in image:
                if limits[0] <= 100 * end <= limits[1]:
                    ax.plot(100 * end, row, marker="|", markersize=9, color=color, zorder=3)
        ax.plot(
            100 * diff,
            row,
            "o",
            markersize=7,
            markerfacecolor="white" if control else color,
            markeredgecolor=color,
            markeredgewidth=1.6,
            zorder=4,
        )
        ax.annotate(
            outcome,
            (1.0, row),
            xycoords=blended_transform_factory(ax.transAxes, ax.transData),
            xytext=(10, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            color=color,
        )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(rows, names)
    for label, control in zip(ax.get_yticklabels(), controls):
        if control:
            label.set_fontstyle("italic")
    ax.set_ylim(-0.7, count - 0.3)
    ax.set_xlim(*limits)
    ax.set_xlabel(f"Test accuracy minus {reference} (points)")
    ax.set_title(f"Difference from {reference}\n{_seed_note(seeds, cut)}", fontsize=10)
    drawn = any(interval is not None for interval in seed_intervals)
    handles = [
        *([Line2D([], [], color="grey", linewidth=9, alpha=0.25, label="95% interval over seeds")] if drawn else []),
        Line2D([], [], color="grey", linewidth=1.6, marker="|", markersize=9, label="95% interval over test images"),
        Line2D([], [], marker="o", color="grey", linestyle="none", label="mean difference"),
        Line2D([], [], marker="o", color="grey", markerfacecolor="white", linestyle="none", label="control (italic)"),
        *[Line2D([], [], color=c, linewidth=3, label=outcome) for outcome, c in OUTCOME_COLORS.items()],
    ]
    ax.legend(
        handles=handles,
        fontsize=7.5,
        frameon=False,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08 - 0.8 / count),
        ncol=4,
        handletextpad=0.8,
    )
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


difference_forest = as_png(forest_figure)
