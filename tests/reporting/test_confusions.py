"""The order of a large confusion heatmap and its most-confused pairs."""

import numpy as np

from distillbench.reporting.confusions import clustered_order, most_confused, superclass_order


def test_clustering_puts_classes_that_are_mistaken_for_each_other_side_by_side():
    rng = np.random.default_rng(0)
    groups, size = 6, 5
    truth = np.repeat(np.arange(groups), size)  # the hidden superclass of each class
    shuffled = rng.permutation(groups * size)  # the dataset's order hides it
    group = truth[shuffled]
    matrix = rng.integers(0, 3, (groups * size, groups * size))  # noise everywhere
    matrix += 40 * (group[:, None] == group[None, :])  # confused within the hidden groups
    np.fill_diagonal(matrix, 300)
    order = clustered_order(matrix)
    assert sorted(order) == list(range(groups * size))
    runs = [group[i] for i in order]
    assert sum(a != b for a, b in zip(runs, runs[1:])) == groups - 1  # every group in one piece


def test_nothing_confused_keeps_the_datasets_order():
    assert clustered_order(np.diag([5, 6, 7, 8])) == [0, 1, 2, 3]


def test_superclasses_order_the_classes_only_when_they_name_each_once():
    names = ["apple", "oak", "pear", "maple"]
    assert superclass_order(names, {"trees": ["oak", "maple"], "fruit": ["apple", "pear"]}) == [1, 3, 0, 2]
    assert superclass_order(names, {"trees": ["oak", "maple"], "fruit": ["apple"]}) is None


def test_most_confused_pairs_are_the_largest_off_diagonal_cells():
    matrix = [[50, 3, 0], [9, 40, 1], [0, 9, 30]]
    assert most_confused(matrix, top=3) == [(1, 0, 9, 0.18), (2, 1, 9, 9 / 39), (0, 1, 3, 3 / 53)]
    assert len(most_confused(matrix)) == 4  # the cells with no image are left out
