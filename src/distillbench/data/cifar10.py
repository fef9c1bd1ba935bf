"""CIFAR-10 on disk: torchvision's verified download, and a safe reader for extracted batches.

The batches are Python 2 pickles. Pickles can run code, so they are read with an unpickler that
admits only what real CIFAR-10 batches contain.
"""

from __future__ import annotations

import codecs
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillbench.errors import UserError

CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
IMAGE_SHAPE = (3, 32, 32)
SYNTHETIC_MARK = "SYNTHETIC"  # in batch_label of generated batches: never report them as CIFAR-10

# ndarray pickles name their rebuild function by module; numpy 2 moved it to numpy._core.
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes in protocol-2 pickles
}


class _ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a callable that real CIFAR-10 batches never contain."""


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _ForbiddenGlobal(f"{module}.{name}") from None


def _unpickle(path: Path) -> object:
    try:
        with open(path, "rb") as handle:
            return _BatchUnpickler(handle, encoding="latin1").load()
    except FileNotFoundError:
        raise UserError(
            f"CIFAR-10 file {path} is missing. --data-dir must be an extracted cifar-10-batches-py "
            f"directory holding {', '.join(TRAIN_FILES)}, {TEST_FILE} and {META_FILE}; "
            "or leave it out to download CIFAR-10."
        ) from None
    except _ForbiddenGlobal as exc:
        raise UserError(
            f"Refusing to load {path}: it asks to call {exc}, which real CIFAR-10 batches never "
            "contain, so it may be malicious. Replace it with the file from the official archive."
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError, UnicodeDecodeError) as exc:
        raise UserError(
            f"CIFAR-10 file {path} is truncated or not a CIFAR pickle ({type(exc).__name__}: {exc}); "
            "re-extract it from the official archive."
        ) from None


def _normalise_keys(obj: object, path: Path) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise UserError(f"CIFAR-10 file {path} holds a {type(obj).__name__}, not a batch dictionary.")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """One batch file as (images uint8 [N, 3, 32, 32], labels int64 [N], batch label), validated."""
    batch = _normalise_keys(_unpickle(path), path)
    for key in ("data", "labels"):
        if key not in batch:
            raise UserError(f"CIFAR-10 file {path} has no {key!r} entry; it is not a CIFAR-10 batch.")
    data, labels = batch["data"], np.asarray(batch["labels"])
    pixels = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        shape = getattr(data, "shape", None)
        raise UserError(
            f"CIFAR-10 file {path}: 'data' must be a uint8 array of shape (N, {pixels}), "
            f"got {type(data).__name__} {getattr(data, 'dtype', '')} {shape}."
        )
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(
            f"CIFAR-10 file {path}: 'labels' must be {len(data)} integers, one per image, "
            f"got {labels.dtype} of shape {labels.shape}."
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise UserError(
            f"CIFAR-10 file {path}: labels must lie in 0..{len(CLASS_NAMES) - 1}, "
            f"found {labels.min()}..{labels.max()}."
        )
    label = batch.get("batch_label", "")
    label = label.decode("latin1") if isinstance(label, bytes) else str(label)
    return data.reshape(-1, *IMAGE_SHAPE), labels.astype(np.int64), label


def read_class_names(path: Path) -> tuple[str, ...]:
    meta = _normalise_keys(_unpickle(path), path)
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != len(CLASS_NAMES):
        raise UserError(f"CIFAR-10 file {path}: 'label_names' must list {len(CLASS_NAMES)} class names.")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


@dataclass(frozen=True)
class Cifar10Arrays:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    synthetic: bool  # generated by distillbench.data.synthetic, not the real CIFAR-10


def read_cifar10_dir(directory: Path) -> Cifar10Arrays:
    """Read an extracted ``cifar-10-batches-py`` directory (no network, no checksums)."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise UserError(
            f"Data directory {directory} does not exist. Point --data-dir (data.dir) at an extracted "
            "cifar-10-batches-py directory, or leave it out to download CIFAR-10."
        )
    train = [read_batch(directory / name) for name in TRAIN_FILES]
    test_images, test_labels, test_label = read_batch(directory / TEST_FILE)
    return Cifar10Arrays(
        train_images=np.concatenate([images for images, _, _ in train]),
        train_labels=np.concatenate([labels for _, labels, _ in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=read_class_names(directory / META_FILE),
        synthetic=any(SYNTHETIC_MARK in label for _, _, label in [*train, (None, None, test_label)]),
    )


def download_cifar10(root: Path) -> Path:
    """torchvision's CIFAR-10 download (md5-verified archive) into ``root``; returns the batch dir."""
    from torchvision.datasets import CIFAR10

    root = Path(root).expanduser()
    try:
        CIFAR10(str(root), train=True, download=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad checksum a RuntimeError
        raise UserError(
            f"Could not download CIFAR-10 into {root} ({type(exc).__name__}: {exc}). Without network, "
            "pass --data-dir (data.dir) pointing at an extracted cifar-10-batches-py directory, and "
            "set weights.resnet50 / weights.vgg16 to local weight files (weights: PATH)."
        ) from None
    return root / CIFAR10.base_folder
