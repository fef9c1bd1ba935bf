"""The ``imagefolder`` dataset: a folder of image files, one subfolder per class, as torchvision's ``ImageFolder``.

``data.dir`` holds a training folder and a test folder (``data.train_split`` and ``data.test_split``:
``train/`` and ``test/``, or ``val/`` when there is no ``test/``), each with one subfolder per class
(nested folders belong to their class). The classes are the sorted subfolder names, and must be the
same in both. Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``, macOS's ``._x.jpg``)
are ignored: torchvision would take ``.ipynb_checkpoints`` for a class. Other files are images by
their extension (png, jpg, bmp, gif, tif, webp, ppm, tga, qoi); a file with another extension (a
README, labels.csv, Thumbs.db) is skipped and counted in the log, as ``ImageFolder`` skips it,
while a file named as an image that does not decode is an error naming it: silently dropping it
would change the dataset without anyone noticing.

Decoding is bounded and cached (``data.decoded``): RGB, ``data.image_size`` pixels per side
(required when the images differ in size), a memory check before the first image, and a cache file
keyed by the image size and every file's relative path, size and modification time, so that a
second run reads one file and a changed folder is decoded again. ``data.train_limit`` and
``data.test_limit`` are applied before decoding (the same images the study would keep), so a large
folder can be studied through a subset without decoding all of it. The test images are interleaved
class by class, so that ``data.test_limit``'s first N cover every class.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillbench.config import DataConfig
from distillbench.data.dataset import DatasetArrays
from distillbench.data.decoded import (
    IMAGE_EXTENSIONS,
    cache_key,
    cached_arrays,
    class_name_array,
    dataset_arrays,
    decode_image,
    decode_splits,
    interleaved,
    log,
    training_subset,
)
from distillbench.errors import UserError

READER_VERSION = 1  # part of the cache key: raise it when the decoded arrays would change
FALLBACK_TEST_FOLDER = "val"  # torchvision/timm layouts often have train/ and val/ only
SYNTHETIC_MARKER = "SYNTHETIC"  # a file of this name beside train/ marks generated data: never real results


@dataclass(frozen=True)
class _Listing:
    """One split's image files, by class (in class order, each sorted), and the files skipped; as
    paths relative to the dataset's root, with "/" (strings: pathlib would triple the time to list
    and key a large folder)."""

    by_class: list[list[str]]
    skipped: list[str]


def read_imagefolder(cfg: DataConfig) -> DatasetArrays:
    """The ``imagefolder`` dataset in ``data.dir``."""
    root = _root(cfg)
    train_folder, test_folder = _split_folders(root, cfg)
    class_names = _class_names(train_folder)
    test_classes = _class_names(test_folder)
    if test_classes != class_names:
        raise UserError(
            f"Image folder {root}: the class folders of {train_folder.name}/ and {test_folder.name}/ differ (only in "
            f"{train_folder.name}/: {_names(set(class_names) - set(test_classes))}; only in {test_folder.name}/: "
            f"{_names(set(test_classes) - set(class_names))}); both must have one subfolder per class, with the "
            "same names."
        )
    train, test = _listing(root, train_folder.name, class_names), _listing(root, test_folder.name, class_names)
    empty = [name for name, files in zip(class_names, train.by_class) if not files]
    if empty:
        raise UserError(
            f"Image folder {train_folder}: no image files in the class folder(s) {_names(empty)}; every class needs "
            f"training images (read: {', '.join(sorted(IMAGE_EXTENSIONS))})."
        )
    if not any(test.by_class):
        raise UserError(f"Image folder {test_folder} holds no image files; put the test images in its class folders.")
    skipped = train.skipped + test.skipped
    if skipped:
        examples = ", ".join(skipped[:3])
        log(f"imagefolder {root}: skipped {len(skipped)} file(s) that are not images by their extension ({examples})")

    train_paths = [path for files in train.by_class for path in files]
    train_labels = np.array([label for label, files in enumerate(train.by_class) for _ in files], dtype=np.int64)
    subset = training_subset(train_labels, cfg)
    if subset is not None:
        train_paths, train_labels = [train_paths[i] for i in subset], train_labels[subset]
    labelled_tests = list(interleaved([[(path, label) for path in files] for label, files in enumerate(test.by_class)]))
    labelled_tests = labelled_tests[: cfg.test_limit] if cfg.test_limit is not None else labelled_tests
    test_paths = [path for path, _ in labelled_tests]
    test_labels = np.array([label for _, label in labelled_tests], dtype=np.int64)

    key = cache_key(
        "imagefolder",
        READER_VERSION,
        cfg.image_size,
        class_names,
        *(_stat_line(root, path) for path in train_paths),
        "test",
        *(_stat_line(root, path) for path in test_paths),
    )

    def decode() -> dict[str, np.ndarray]:
        train_images, test_images = decode_splits(
            [
                (f"{train_folder}", _items(root, train_paths), len(train_paths)),
                (f"{test_folder}", _items(root, test_paths), len(test_paths)),
            ],
            lambda name, path: decode_image(path, cfg.image_size, name),
            cfg.image_size,
            f"Image folder {root}",
        )
        return {
            "train_images": train_images,
            "train_labels": train_labels,
            "test_images": test_images,
            "test_labels": test_labels,
            "class_names": class_name_array(class_names),
        }

    arrays = cached_arrays(cfg, key, decode, f"imagefolder {root}")
    synthetic = (root / SYNTHETIC_MARKER).exists()
    source = f"image folder {root} ({train_folder.name}/, {test_folder.name}/)"
    return dataset_arrays(
        arrays, class_names, f"GENERATED data in image-folder format ({source})" if synthetic else source, synthetic
    )


def _root(cfg: DataConfig) -> Path:
    if cfg.dir is None:
        raise UserError(
            "data.dataset=imagefolder reads a folder of images: set data.dir (--data-dir) to a directory holding "
            "train/ and test/ (or val/), each with one subfolder of images per class."
        )
    root = Path(cfg.dir).expanduser()
    if not root.is_dir():
        raise UserError(
            f"Image folder {root} does not exist (data.dir); point --data-dir at a directory holding train/ and "
            "test/ (or val/), each with one subfolder of images per class."
        )
    return root


def _split_folders(root: Path, cfg: DataConfig) -> tuple[Path, Path]:
    """The training and test folders: ``data.train_split``/ and ``data.test_split``/ (``val/`` when
    the test split is the default ``test`` and there is no ``test/``)."""
    if cfg.train_split == cfg.test_split:
        raise UserError(
            f"data.train_split and data.test_split are both {cfg.train_split!r}: a model tested on its own training "
            "images says nothing; name two different folders."
        )
    test_names = [cfg.test_split] + ([FALLBACK_TEST_FOLDER] if cfg.test_split == "test" else [])
    test_folder = next((root / name for name in test_names if (root / name).is_dir()), None)
    train_folder = root / cfg.train_split
    if train_folder.is_dir() and test_folder is not None:
        return train_folder, test_folder
    found = sorted(entry.name + "/" for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    wanted = f"{cfg.train_split}/ and {' or '.join(name + '/' for name in test_names)}"
    raise UserError(
        f"Image folder {root} must hold {wanted}, each with one subfolder per class; it holds "
        f"{', '.join(found) or 'no folders'}. Rename them, or set data.train_split and data.test_split to the "
        "folders' names."
    )


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _class_names(folder: Path) -> list[str]:
    names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and _visible(entry.name))
    if not names:
        raise UserError(f"Image folder {folder} has no class subfolders; put each class's images in a subfolder.")
    return names


def _listing(root: Path, split: str, class_names: list[str]) -> _Listing:
    """The image files of every class folder of ``split`` (nested folders included, symbolic links
    to folders not followed: a link cycle cannot hang the walk), sorted; and the visible files that
    are no images."""
    by_class, skipped = [], []
    for name in class_names:
        files = []
        for parent, subfolders, file_names in os.walk(root / split / name):
            subfolders[:] = [sub for sub in subfolders if _visible(sub)]
            relative = Path(parent).relative_to(root).as_posix()
            for file_name in filter(_visible, file_names):
                is_image = os.path.splitext(file_name)[1].lower() in IMAGE_EXTENSIONS
                (files if is_image else skipped).append(f"{relative}/{file_name}")
        by_class.append(sorted(files))
    return _Listing(by_class, sorted(skipped))


def _stat_line(root: Path, path: str) -> str:
    """A file's relative path, size and modification time, for the cache key."""
    try:
        stat = os.stat(os.path.join(root, path))
    except OSError as exc:
        raise UserError(
            f"Image {root / path} cannot be read ({exc.strerror or exc}); check it exists and is readable."
        ) from None
    return f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}"


def _items(root: Path, paths: list[str]) -> Iterator[tuple[str, str]]:
    """(name for the errors, file to open) of each image."""
    return ((os.path.join(root, path),) * 2 for path in paths)


def _names(names: object) -> str:
    return ", ".join(sorted(names)) or "none"
