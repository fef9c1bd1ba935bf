"""The ``hf:<name>`` datasets: an image-classification dataset of Hugging Face ``datasets``.

``data.dataset: hf:<name>`` loads ``<name>`` with ``datasets.load_dataset`` (from the Hub, or from
the local cache ``~/.cache/huggingface/datasets`` once downloaded); ``hf:<path>`` of an existing
directory loads a dataset saved there with ``DatasetDict.save_to_disk`` (``load_from_disk``), or
else lets ``load_dataset`` read the directory's files (parquet, csv, Hugging Face's own image
folders). ``datasets`` is an optional extra: ``pip install 'distillbench[hf]'``.

The splits ``data.train_split`` and ``data.test_split``, the columns ``data.image_column`` (images:
Hugging Face ``Image`` values, decoded here as ``data.decoded`` decodes files, or uint8 arrays) and
``data.label_column``. The class names are the label feature's ``names`` (a ``ClassLabel``), else
the sorted distinct labels as text. Every image becomes RGB uint8 at ``data.image_size`` pixels per
side (or the images' own size when all are equal). ``data.train_limit`` and ``data.test_limit``
select before decoding, as for ``imagefolder``.

Offline: a dataset in the local cache loads without network; set ``HF_DATASETS_OFFLINE=1`` so that
``datasets`` does not first try the Hub (five retries, about 25 seconds). A dataset neither cached
nor reachable is a one-paragraph error. The decoded arrays are cached (``data.decoded``) under a key
holding each split's ``datasets`` fingerprint (which changes with the data), so a second run reads
one file; a dataset without a fingerprint is decoded every time.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from distillbench.config import DataConfig
from distillbench.data.dataset import DatasetArrays
from distillbench.data.decoded import (
    cache_key,
    cached_arrays,
    class_name_array,
    dataset_arrays,
    decode_image,
    decode_splits,
    image_array,
    training_subset,
)
from distillbench.errors import UserError

PREFIX = "hf:"  # data.dataset: hf:<name or path>
READER_VERSION = 1  # part of the cache key: raise it when the decoded arrays would change
BATCH_ROWS = 256  # rows read from Arrow at a time while decoding
SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk leaves in a directory
NO_LABEL = -1  # ClassLabel's value for an unlabelled row (the hidden test sets of benchmarks)


def read_huggingface(cfg: DataConfig) -> DatasetArrays:
    """The ``hf:<name or path>`` dataset named by ``data.dataset``."""
    name = cfg.dataset[len(PREFIX) :].strip() if cfg.dataset.startswith(PREFIX) else ""
    if not name:
        raise UserError(
            f"data.dataset={cfg.dataset!r}: name the Hugging Face dataset after 'hf:', e.g. hf:uoft-cs/cifar10, or give "
            "the path of a dataset saved with save_to_disk, e.g. hf:~/data/my_dataset."
        )
    if cfg.train_split == cfg.test_split:
        raise UserError(
            f"data.train_split and data.test_split are both {cfg.train_split!r}: a model tested on its own training "
            "images says nothing; name two different splits."
        )
    datasets = _import_datasets()
    loaded, where = _load(datasets, name)
    train, test = (_split(loaded, split, where) for split in (cfg.train_split, cfg.test_split))
    for split, dataset in ((cfg.train_split, train), (cfg.test_split, test)):
        _check_columns(dataset, cfg, f"{where}, split {split!r}")
    if len(train) == 0 or len(test) == 0:
        empty = cfg.train_split if len(train) == 0 else cfg.test_split
        raise UserError(f"{where}: split {empty!r} has no rows; choose a split with images.")
    class_names, train_labels, test_labels = _labels(datasets, train, test, cfg, where)

    subset = training_subset(train_labels, cfg)
    train_rows = subset if subset is not None else np.arange(len(train_labels))
    test_rows = np.arange(min(len(test_labels), cfg.test_limit or len(test_labels)))
    fingerprints = [getattr(dataset, "_fingerprint", None) for dataset in (train, test)]
    key = cache_key(
        "hf",
        READER_VERSION,
        where,
        cfg.train_split,
        cfg.test_split,
        cfg.image_column,
        cfg.label_column,
        cfg.image_size,
        cfg.train_limit,
        cfg.test_limit,
        cfg.split_seed,
        *fingerprints,
        len(train),
        len(test),
        class_names,
    )

    def decode() -> dict[str, np.ndarray]:
        train_images, test_images = decode_splits(
            [
                (
                    f"split {split}",
                    _rows(_images(datasets, dataset, cfg.image_column), rows, f"{where}, split {split!r}"),
                    len(rows),
                )
                for split, dataset, rows in ((cfg.train_split, train, train_rows), (cfg.test_split, test, test_rows))
            ],
            lambda name, value: _decode_value(value, cfg.image_size, name),
            cfg.image_size,
            where,
        )
        return {
            "train_images": train_images,
            "train_labels": train_labels[train_rows],
            "test_images": test_images,
            "test_labels": test_labels[test_rows],
            "class_names": class_name_array(class_names),
        }

    if None in fingerprints:
        arrays = decode()
    else:
        arrays = cached_arrays(cfg, key, decode, where)
    return dataset_arrays(arrays, class_names, f"{where} (splits {cfg.train_split}, {cfg.test_split})", False)


def _import_datasets() -> ModuleType:
    try:
        import datasets
    except ImportError:
        raise UserError(
            "data.dataset=hf:... reads Hugging Face datasets, which needs the optional 'datasets' package: "
            "pip install 'distillbench[hf]' (or pip install 'datasets>=4.0')."
        ) from None
    major = int(str(getattr(datasets, "__version__", "0")).split(".")[0] or 0)
    if major < 4:  # before 4.0 a dataset could ship a loading script that runs on load
        raise UserError(
            f"data.dataset=hf:... needs datasets 4.0 or newer (installed: {datasets.__version__}); older versions run "
            "a dataset's own loading script, code from the dataset's authors, when it loads. Upgrade: "
            "pip install -U 'datasets>=4.0'."
        )
    return datasets


def _load(datasets: ModuleType, name: str) -> tuple[Any, str]:
    """The loaded splits (a ``DatasetDict``) and the words naming where they came from."""
    path = Path(name).expanduser()
    saved = path.is_dir() and any((path / marker).is_file() for marker in SAVED_MARKERS)
    where = f"Hugging Face dataset saved in {path}" if saved else f"Hugging Face dataset {name!r}"
    try:
        loaded = (
            datasets.load_from_disk(str(path)) if saved else datasets.load_dataset(str(path) if path.is_dir() else name)
        )
    except ConnectionError as exc:  # offline (HF_DATASETS_OFFLINE=1) or no network, and not in the cache
        raise UserError(
            f"Could not load {where}: it is not in the local cache (~/.cache/huggingface/datasets, or "
            f"HF_DATASETS_CACHE) and the Hub cannot be reached ({exc}). Load it once on a machine with network and "
            "copy the cache folder, or save it there with DatasetDict.save_to_disk(PATH) and use data.dataset=hf:PATH. "
            "Offline, set HF_DATASETS_OFFLINE=1 so that no download is tried."
        ) from None
    except (OSError, ValueError) as exc:  # DatasetNotFoundError is a FileNotFoundError; a bad config a ValueError
        raise UserError(
            f"Could not load {where} ({type(exc).__name__}: {str(exc)[:300]}). Check the name (as on "
            "huggingface.co/datasets, e.g. uoft-cs/cifar10), or give the path of a dataset saved with save_to_disk."
        ) from None
    if not isinstance(loaded, datasets.DatasetDict):
        raise UserError(
            f"{where} holds a single split, not a DatasetDict of splits; save "
            "DatasetDict({'train': ..., 'test': ...}) instead, so that its training and test splits can be named."
        )
    return loaded, where


def _split(loaded: Any, split: str, where: str) -> Any:
    if split not in loaded:
        field = "data.train_split" if split == "train" else "data.test_split"
        raise UserError(
            f"{where} has no split {split!r}; its splits are {', '.join(loaded)}. Set data.train_split and "
            f"data.test_split to two of them (the {field} default is {split!r})."
        )
    return loaded[split]


def _check_columns(dataset: Any, cfg: DataConfig, where: str) -> None:
    for field, column in (("image_column", cfg.image_column), ("label_column", cfg.label_column)):
        if column not in dataset.column_names:
            raise UserError(
                f"{where} has no column {column!r} (data.{field}); its columns are {', '.join(dataset.column_names)}. "
                f"Set data.{field} to the one holding the {field.split('_')[0]}s."
            )


def _labels(
    datasets: ModuleType, train: Any, test: Any, cfg: DataConfig, where: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The class names and both splits' labels as indices into them."""
    train_values, test_values = list(train[cfg.label_column]), list(test[cfg.label_column])
    feature = train.features[cfg.label_column]
    if isinstance(feature, datasets.ClassLabel):
        names = [str(name) for name in feature.names]
        test_feature = test.features[cfg.label_column]
        if not isinstance(test_feature, datasets.ClassLabel) or test_feature.names != feature.names:
            raise UserError(
                f"{where}: column {cfg.label_column!r} names its classes differently in split {cfg.train_split!r} "
                f"({feature}) and split {cfg.test_split!r} ({test_feature}); both must share one ClassLabel."
            )
        for split, values in ((cfg.train_split, train_values), (cfg.test_split, test_values)):
            outside = sorted(
                {value for value in values if not (isinstance(value, int) and 0 <= value < len(names))}, key=str
            )
            if outside:
                hint = " (-1 marks an unlabelled row: choose a labelled split)" if NO_LABEL in outside else ""
                raise UserError(
                    f"{where}, split {split!r}: labels {', '.join(map(str, outside[:5]))} in column "
                    f"{cfg.label_column!r} name none of its {len(names)} classes{hint}."
                )
        return names, np.asarray(train_values, dtype=np.int64), np.asarray(test_values, dtype=np.int64)
    if not all(_is_label(value) for value in train_values + test_values):
        raise UserError(
            f"{where}: column {cfg.label_column!r} (data.label_column) holds {feature}, not class labels; it must hold "
            "integers or text, one class per row."
        )
    distinct = sorted(set(train_values), key=lambda value: (isinstance(value, str), value))  # 2 before 10
    unseen = set(test_values) - set(distinct)
    if unseen:
        raise UserError(
            f"{where}: split {cfg.test_split!r} has labels that split {cfg.train_split!r} never has "
            f"({', '.join(sorted(map(str, unseen))[:5])}); a class must have training images to be tested."
        )
    index = {value: position for position, value in enumerate(distinct)}
    return (
        [str(value) for value in distinct],
        np.array([index[value] for value in train_values], dtype=np.int64),
        np.array([index[value] for value in test_values], dtype=np.int64),
    )


def _is_label(value: object) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _images(datasets: ModuleType, dataset: Any, column: str) -> Any:
    """The image column, left undecoded when it holds Hugging Face images (they are decoded here,
    bounded), as numpy arrays otherwise."""
    images = dataset.select_columns([column])
    if isinstance(images.features[column], datasets.Image):
        return images.cast_column(column, datasets.Image(decode=False))
    return images.with_format("numpy")


def _rows(images: Any, rows: np.ndarray, where: str) -> Iterator[tuple[str, object]]:
    """(name, value) of each row in ``rows``, read a batch at a time."""
    column = images.column_names[0]
    for start in range(0, len(rows), BATCH_ROWS):
        batch = rows[start : start + BATCH_ROWS]
        for row, value in zip(batch, images[batch.tolist()][column]):
            yield f"{where}, row {row}", value


def _decode_value(value: object, size: int | None, name: str) -> np.ndarray:
    """An ``Image(decode=False)`` value ({bytes, path}) or an array, as uint8 [3, H, W]."""
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        if value.get("bytes") is not None:
            return decode_image(io.BytesIO(value["bytes"]), size, name)
        if value.get("path"):
            return decode_image(value["path"], size, f"{name} ({value['path']})")
        raise UserError(f"{name}: the image is empty (neither bytes nor a path); remove the row.")
    return image_array(value, size, name)
