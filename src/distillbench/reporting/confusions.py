"""What a confusion matrix says when it is too large to read cell by cell (more than
``COUNTS_UP_TO`` classes): the order its heatmap shows the classes in, and its most-confused pairs.

The order is one for the whole study, so that every model's heatmap can be laid beside another's:
by superclass when the dataset has superclasses (CIFAR-100's 20), otherwise by average-linkage
hierarchical clustering (``scipy.cluster.hierarchy``) of the confusion of all models summed. Two
classes are close when they are mistaken for each other: the distance is one minus their mutual
confusion (the share of either class predicted as the other, averaged both ways), relative to the
largest such share. Clustering the raw rows of the matrix would not do this: a row is dominated by
its own diagonal cell, and the rows of two classes confused with each other put their mass in
different columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

COUNTS_UP_TO = 20  # classes: up to this many, a confusion matrix shows its counts in its cells
MOST_CONFUSED = 20  # rows of the most-confused pairs table
OPTIMAL_ORDERING_UP_TO = 300  # classes: scipy's optimal leaf ordering grows quickly beyond


def row_shares(matrix: np.ndarray) -> np.ndarray:
    """Each cell as a share of its row (its true class); a class without test images stays 0."""
    matrix = np.asarray(matrix, dtype=float)
    return matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)


def superclass_order(class_names: Sequence[str], superclasses: Mapping[str, Sequence[str]]) -> list[int] | None:
    """Class indices grouped by superclass (in the superclasses' order), or None when the
    superclasses do not name every class exactly once."""
    index = {name: i for i, name in enumerate(class_names)}
    order = [index.get(name, -1) for members in superclasses.values() for name in members]
    return order if sorted(order) == list(range(len(class_names))) else None


def clustered_order(matrix: np.ndarray) -> list[int]:
    """Class indices in the leaf order of a hierarchical clustering by mutual confusion (module docstring)."""
    shares = row_shares(matrix)
    np.fill_diagonal(shares, 0.0)
    mutual = (shares + shares.T) / 2
    largest = mutual.max()
    if len(mutual) < 3 or largest <= 0:  # nothing is confused: no order is better than the dataset's
        return list(range(len(mutual)))
    distance = 1.0 - mutual / largest
    np.fill_diagonal(distance, 0.0)
    tree = linkage(
        squareform(distance, checks=False), method="average", optimal_ordering=len(mutual) <= OPTIMAL_ORDERING_UP_TO
    )
    return [int(leaf) for leaf in leaves_list(tree)]


def class_order(results: dict[str, Any]) -> tuple[list[int], str]:
    """The study's order of classes for its confusion heatmaps, and how it was found, in words."""
    study = results["study"]
    names = study["class_names"]
    if study.get("superclasses"):
        order = superclass_order(names, study["superclasses"])
        if order is not None:
            return order, "grouped by superclass"
    total = np.sum([model["confusion_matrix"] for model in results["models"].values()], axis=0)
    return clustered_order(total), "ordered by clustering on mutual confusion (all models)"


def most_confused(matrix: Sequence[Sequence[int]], top: int = MOST_CONFUSED) -> list[tuple[int, int, int, float]]:
    """The ``top`` largest off-diagonal cells as (true class, predicted class, count, share of the
    true class), largest count first (ties: in class order); cells with no image are left out."""
    counts = np.asarray(matrix, dtype=np.int64)
    shares = row_shares(counts)
    off = counts.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = []
    for true, predicted in zip(*np.unravel_index(flat, off.shape)):
        if off[true, predicted] > 0:
            pairs.append((int(true), int(predicted), int(off[true, predicted]), float(shares[true, predicted])))
    return pairs
