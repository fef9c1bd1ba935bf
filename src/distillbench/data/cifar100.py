"""CIFAR-100 on disk: torchvision's checksummed download, and the restricted reader of CIFAR pickles.

Krizhevsky (2009), "Learning Multiple Layers of Features from Tiny Images". The python version
(``cifar-100-python/``) holds three Python 2 pickles, read by CIFAR-10's restricted unpickler
(``data.cifar10``: nothing in them is called): ``train`` and ``test`` with ``data`` (uint8
[N, 3072]), ``fine_labels`` (the 100 classes, trained on and evaluated) and ``coarse_labels`` (the
20 superclasses); ``meta`` with ``fine_label_names`` and ``coarse_label_names``. Which classes make
up a superclass is stored nowhere as such: it is derived from the training file's label pairs (all
images of a class carry one coarse label) and checked against the test file's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillbench.config import DataConfig
from distillbench.data.cifar10 import (
    SYNTHETIC_MARK,
    PickleLayout,
    batch_images,
    batch_labels,
    batch_names,
    describe_source,
    download_error,
    existing_directory,
    text,
    unpickle,
)
from distillbench.data.dataset import DatasetArrays
from distillbench.errors import UserError

FOLDER = "cifar-100-python"
TRAIN_FILE, TEST_FILE, META_FILE = "train", "test", "meta"
CIFAR100_LAYOUT = PickleLayout("CIFAR-100", FOLDER, (TRAIN_FILE, TEST_FILE, META_FILE))


def read_split(path: Path, classes: int, superclasses: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``train`` or ``test`` as (images uint8 [N, 3, 32, 32], fine labels, coarse labels, batch label)."""
    batch = unpickle(path, CIFAR100_LAYOUT)
    images = batch_images(batch, path, CIFAR100_LAYOUT)
    fine = batch_labels(batch, "fine_labels", len(images), classes, path, CIFAR100_LAYOUT)
    coarse = batch_labels(batch, "coarse_labels", len(images), superclasses, path, CIFAR100_LAYOUT)
    return images, fine, coarse, text(batch.get("batch_label", ""))


def superclass_members(
    fine: np.ndarray, coarse: np.ndarray, class_names: tuple[str, ...], superclass_names: tuple[str, ...], path: Path
) -> dict[str, tuple[str, ...]]:
    """Superclass name -> its classes' names (in class order), from one split's label pairs."""
    codes = np.unique(fine * len(superclass_names) + coarse)  # each (class, superclass) pair once, sorted
    pairs = np.stack([codes // len(superclass_names), codes % len(superclass_names)], axis=1)
    found = np.bincount(pairs[:, 0], minlength=len(class_names))
    if (found != 1).any():
        index = int(np.flatnonzero(found != 1)[0])
        state = "has no images" if found[index] == 0 else f"is labelled with {found[index]} different superclasses"
        raise UserError(
            f"CIFAR-100 file {path}: class {class_names[index]!r} {state}, so its superclass is unknown; "
            "the file is damaged or not CIFAR-100's (re-extract it from the official archive)."
        )
    members: dict[str, tuple[str, ...]] = {}
    for number, name in enumerate(superclass_names):
        members[name] = tuple(class_names[i] for i in pairs[pairs[:, 1] == number, 0])
        if not members[name]:
            raise UserError(
                f"CIFAR-100 file {path}: superclass {name!r} has no classes; the file and its meta disagree "
                "(re-extract them from the official archive)."
            )
    return members


def read_cifar100_dir(directory: Path, origin: str = "local directory") -> DatasetArrays:
    """Read an extracted ``cifar-100-python`` directory (no network, no checksums); ``origin`` says for
    the report how the directory came to be."""
    directory = existing_directory(directory, CIFAR100_LAYOUT)
    meta = unpickle(directory / META_FILE, CIFAR100_LAYOUT)
    class_names = batch_names(meta, "fine_label_names", directory / META_FILE, CIFAR100_LAYOUT)
    superclass_names = batch_names(meta, "coarse_label_names", directory / META_FILE, CIFAR100_LAYOUT)
    classes, superclasses = len(class_names), len(superclass_names)
    train_images, train_fine, train_coarse, train_label = read_split(directory / TRAIN_FILE, classes, superclasses)
    test_images, test_fine, test_coarse, test_label = read_split(directory / TEST_FILE, classes, superclasses)
    members = superclass_members(train_fine, train_coarse, class_names, superclass_names, directory / TRAIN_FILE)
    expected = np.empty(classes, dtype=np.int64)  # each class's coarse label, by the training file
    for number, name in enumerate(superclass_names):
        expected[[class_names.index(member) for member in members[name]]] = number
    if (expected[test_fine] != test_coarse).any():
        index = int(np.flatnonzero(expected[test_fine] != test_coarse)[0])
        raise UserError(
            f"CIFAR-100 file {directory / TEST_FILE}: its image {index} of class {class_names[test_fine[index]]!r} "
            f"has superclass {superclass_names[test_coarse[index]]!r}, but the training file puts that class in "
            f"{superclass_names[expected[test_fine[index]]]!r}; re-extract both from the official archive."
        )
    synthetic = SYNTHETIC_MARK in train_label or SYNTHETIC_MARK in test_label
    return DatasetArrays(
        train_images=train_images,
        train_labels=train_fine,
        test_images=test_images,
        test_labels=test_fine,
        class_names=class_names,
        source=describe_source("CIFAR-100", f"{origin} {directory}", synthetic),
        synthetic=synthetic,
        superclasses=members,
    )


def read_cifar100(cfg: DataConfig) -> DatasetArrays:
    """The ``cifar100`` dataset: ``data.dir`` if given, else torchvision's checksummed download."""
    if cfg.dir is not None:
        return read_cifar100_dir(cfg.dir)
    return read_cifar100_dir(download_cifar100(cfg.download_root), "torchvision download (md5-verified) in")


def download_cifar100(root: Path) -> Path:
    """The official archive (torchvision's URL and md5) downloaded, checked and extracted into ``root``,
    unless its three files are already there with their published md5; returns ``root/cifar-100-python``.

    torchvision's ``CIFAR100(download=True)`` would also unpickle the files with ``pickle.load``;
    only its URL and checksums are used here, so nothing is read but by the restricted reader."""
    from torchvision.datasets import CIFAR100
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    root = Path(root).expanduser()
    folder = root / CIFAR100.base_folder
    files = [*CIFAR100.train_list, *CIFAR100.test_list, [CIFAR100.meta["filename"], CIFAR100.meta["md5"]]]
    if all(check_integrity(str(folder / name), md5) for name, md5 in files):
        return folder
    try:
        download_and_extract_archive(CIFAR100.url, str(root), filename=CIFAR100.filename, md5=CIFAR100.tgz_md5)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad checksum a RuntimeError
        raise download_error("CIFAR-100", root, exc, CIFAR100_LAYOUT.expected(), "cifar100") from None
    return folder
