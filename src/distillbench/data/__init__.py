"""The study's data: one uint8 tensor per split, in memory; batches are index slices.

Datasets are found by name (``data.dataset``) in ``DATASETS``; see ``data.dataset``. A name
registered with a trailing colon reads a family: ``hf:`` reads every ``hf:<name or path>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from distillbench.config import DataConfig
from distillbench.data.cifar10 import read_cifar10
from distillbench.data.cifar100 import read_cifar100
from distillbench.data.dataset import DATASETS, DatasetArrays, DatasetReader, register_dataset
from distillbench.data.huggingface import PREFIX as HF_PREFIX
from distillbench.data.huggingface import read_huggingface
from distillbench.data.imagefolder import read_imagefolder
from distillbench.data.svhn import read_svhn
from distillbench.errors import UserError

__all__ = [
    "DATASETS",
    "DatasetArrays",
    "Split",
    "StudyData",
    "dataset_problem",
    "dataset_reader",
    "load_study_data",
    "register_dataset",
]

register_dataset("cifar10", read_cifar10)
register_dataset("cifar100", read_cifar100)
register_dataset("svhn", read_svhn)
register_dataset("imagefolder", read_imagefolder)
register_dataset(HF_PREFIX, read_huggingface)


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 [N, 3, H, W]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class StudyData:
    train: Split
    val: Split | None  # None: data.val_size 0, every training image is in train
    test: Split
    class_names: tuple[str, ...]
    source: str  # where the data came from, for the report
    synthetic: bool  # generated data: its numbers are never CIFAR-10 results
    fingerprint: str  # sha256 over every split's pixels and labels
    superclasses: Mapping[str, tuple[str, ...]] | None = None  # DatasetArrays.superclasses

    @property
    def splits(self) -> dict[str, Split]:
        """The splits there are, by name: train, val (unless ``val`` is None) and test."""
        present = {"train": self.train, "val": self.val, "test": self.test}
        return {name: split for name, split in present.items() if split is not None}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of every image."""
        return tuple(self.train.images.shape[1:])


def _fingerprint(splits: dict[str, Split | None]) -> str:
    digest = hashlib.sha256()
    for name, split in splits.items():
        if split is None:  # no validation split: the names hashed tell it from any split that exists
            continue
        digest.update(name.encode())
        digest.update(split.images.contiguous().numpy())  # hashed through the buffer, not copied
        digest.update(split.labels.contiguous().numpy())
    return digest.hexdigest()


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64)))


def dataset_reader(name: str) -> DatasetReader | None:
    """The reader of ``data.dataset: name``: the one registered under ``name``, else the family its
    prefix names (``hf:x`` -> the reader registered as ``hf:``); None when there is neither."""
    if name in DATASETS and not name.endswith(":"):
        return DATASETS[name]
    prefix, colon, rest = name.partition(":") if isinstance(name, str) else ("", "", "")
    return DATASETS.get(prefix + colon) if colon and rest.strip() else None


def dataset_problem(name: str, where: str = "data.dataset") -> str | None:
    """The config error line for ``data.dataset: name`` (``where``), or None when a reader reads it."""
    if dataset_reader(name) is not None:
        return None
    if isinstance(name, str) and name.strip().endswith(":") and name.strip() in DATASETS:
        return f"{where}: name the dataset after {name.strip()!r}, e.g. {name.strip()}<name or path>"
    return DATASETS.unknown(name, where)


def load_study_data(cfg: DataConfig) -> StudyData:
    """Read (or download) ``cfg.dataset`` and carve the seeded, stratified validation split
    (``val_size`` 0: none; ``val`` is None and train holds every training image)."""
    reader = dataset_reader(cfg.dataset)
    if reader is None:
        raise UserError(f"{dataset_problem(cfg.dataset)}.")
    arrays = reader(cfg)
    images, labels = arrays.train_images, arrays.train_labels
    if cfg.train_limit is not None and cfg.train_limit < len(labels):
        images, _, labels, _ = train_test_split(
            images, labels, train_size=cfg.train_limit, stratify=labels, random_state=cfg.split_seed
        )
    train, val = _hold_out(images, labels, cfg, len(arrays.class_names))
    test_x, test_y = arrays.test_images, arrays.test_labels
    if cfg.test_limit is not None:
        test_x, test_y = test_x[: cfg.test_limit], test_y[: cfg.test_limit]
    splits = {"train": train, "val": val, "test": _split(test_x, test_y)}
    return StudyData(
        **splits,
        class_names=arrays.class_names,
        source=arrays.source,
        synthetic=arrays.synthetic,
        fingerprint=_fingerprint(splits),
        superclasses=_checked_superclasses(arrays),
    )


def _hold_out(images: np.ndarray, labels: np.ndarray, cfg: DataConfig, classes: int) -> tuple[Split, Split | None]:
    """(train, val): ``cfg.val_size`` images held out, seeded and stratified; val None at size 0."""
    if cfg.val_size == 0:
        return _split(images, labels), None
    if cfg.val_size >= len(labels) - classes:
        raise UserError(
            f"data.val_size={cfg.val_size} leaves too few training images out of {len(labels)}; "
            "choose a smaller data.val_size."
        )
    try:
        train_x, val_x, train_y, val_y = train_test_split(
            images, labels, test_size=cfg.val_size, stratify=labels, random_state=cfg.split_seed
        )
    except ValueError as exc:
        raise UserError(f"data.val_size={cfg.val_size} cannot be stratified over the classes: {exc}") from None
    return _split(train_x, train_y), _split(val_x, val_y)


def _checked_superclasses(arrays: DatasetArrays) -> dict[str, tuple[str, ...]] | None:
    """The dataset's superclasses, if it has any, checked to cover every class exactly once."""
    if arrays.superclasses is None:
        return None
    grouped = [name for members in arrays.superclasses.values() for name in members]
    if sorted(grouped) != sorted(arrays.class_names):
        raise UserError(
            f"{arrays.source}: its superclasses do not cover each of its {len(arrays.class_names)} classes exactly "
            "once; the dataset's files are inconsistent (re-download or re-extract them)."
        )
    return {name: tuple(members) for name, members in arrays.superclasses.items()}
