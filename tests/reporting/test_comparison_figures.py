"""The accuracy dot plot and the distillation forest: zoomed to the data, honest about intervals
over one or two seeds, every model its own look, one label per model."""

import matplotlib.pyplot as plt

from distillbench.reporting.comparison_figures import accuracy_figure, forest_figure
from distillbench.reporting.figures import model_style
from distillbench.reporting.study_figures import single_labels


def _legend(fig) -> list[str]:
    return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]


def test_the_accuracy_axis_is_zoomed_to_the_data_and_keeps_chance_in_view_or_in_words():
    per_seed = [[0.55, 0.56, 0.57], [0.70, 0.71, 0.69], [0.53, 0.52, 0.54]]
    intervals = [[0.53, 0.59], [0.68, 0.72], [0.50, 0.56]]
    fig = accuracy_figure(["a", "b", "c"], per_seed, intervals, 100)
    low, high = fig.axes[0].get_xlim()
    assert 45 < low < 52 and 72 < high < 75  # zoomed: a 1-point gap is visible
    assert "chance: 1%, off the left of this zoomed axis" in _legend(fig)
    assert [label.get_text() for label in fig.axes[0].get_yticklabels()] == ["c", "a", "b"]  # best on top
    plt.close(fig)
    fig = accuracy_figure(["a", "b"], [[0.11, 0.12, 0.13], [0.14, 0.16, 0.15]], [None, None], 10)
    assert fig.axes[0].get_xlim()[0] < 10 and "chance (10%)" in _legend(fig)
    plt.close(fig)


def test_two_seed_intervals_do_not_set_the_axis_and_the_figure_says_why():
    fig = accuracy_figure(["a", "b"], [[0.55, 0.57], [0.60, 0.61]], [[-0.07, 1.19], [0.54, 0.67]], 10)
    low, high = fig.axes[0].get_xlim()
    assert 50 < low and high < 65
    assert "2 seeds: the interval over seeds (t, 1 degree of freedom) is too wide" in fig.axes[0].get_title()
    plt.close(fig)


def test_fifteen_models_never_share_a_colour_and_marker():
    assert len({(color, marker) for color, marker in map(model_style, range(30))}) == 30


def test_the_forest_clips_to_feasible_differences_and_keeps_the_image_interval_on_top():
    fig = forest_figure(
        ["a", "b"],
        [0.02, -0.01],
        [[-0.6, 0.64], [-0.5, 0.48]],  # two seeds: about +-60 points
        [[0.005, 0.035], [-0.02, 0.0]],
        ["inconclusive", "inconclusive"],
        [False, True],
        "Scratch",
        2,
    )
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert -5 < low < -2 and 3.5 < high < 6  # set by the differences and the image intervals
    assert "2 seeds" in ax.get_title() and "cut and end in an arrow" in ax.get_title()
    band = max(ax.lines, key=lambda line: line.get_linewidth())
    image = next(line for line in ax.lines if line.get_linewidth() == 1.6)
    assert image.get_zorder() > band.get_zorder()
    assert [label.get_fontstyle() for label in ax.get_yticklabels()] == ["normal", "italic"]  # b is a control
    plt.close(fig)
    fig = forest_figure(["a"], [0.9], [None], [[-1.5, 1.9]], ["inconclusive"], [False], "Scratch", 1)
    assert -100 <= fig.axes[0].get_xlim()[0] and fig.axes[0].get_xlim()[1] <= 100
    assert "1 seed: no interval over seeds" in fig.axes[0].get_title()
    assert "95% interval over seeds" not in _legend(fig)
    plt.close(fig)


def test_a_model_is_labelled_by_its_title_and_by_its_key_only_when_titles_repeat():
    labels = single_labels({"a": "KD", "b": "KD", "shuffled_teacher": "Shuffled teacher (control)"})
    assert labels == {"a": "KD [a]", "b": "KD [b]", "shuffled_teacher": "Shuffled teacher (control)"}
