"""Datasets found by name: ``data.dataset`` in the config names a registered reader.

A reader turns the ``data:`` section into ``DatasetArrays`` (uint8 images ``[N, C, H, W]`` and
integer labels for a training and a test set, the class names, and where they came from); the study
carves its validation split from the training set, the same way for every dataset. Add a dataset
with one file holding its reader and one ``register_dataset`` line in ``data/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from distillbench.config import DataConfig
from distillbench.registry import Registry


@dataclass(frozen=True)
class DatasetArrays:
    train_images: np.ndarray  # uint8 [N, C, H, W]
    train_labels: np.ndarray  # int64 [N], each in range(len(class_names))
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    source: str  # where the data came from, for the report
    synthetic: bool  # generated data: its numbers are never results on the real dataset
    # Groups of classes the report aggregates over (CIFAR-100's 20 superclasses): name -> class
    # names, every class in exactly one group; None when the dataset has none.
    superclasses: Mapping[str, tuple[str, ...]] | None = None


DatasetReader = Callable[[DataConfig], DatasetArrays]
DATASETS: Registry[DatasetReader] = Registry("dataset")


def register_dataset(name: str, reader: DatasetReader) -> None:
    """``reader`` reads ``data.dataset: name``; a name registers once."""
    DATASETS.register(name, reader)
