"""CIFAR-10 on disk: torchvision's verified download, and a safe reader for extracted batches.

The batches are Python 2 pickles. Pickles can run code, so they are read with an unpickler that
admits only what real CIFAR-10 batches contain.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from distillbench.config import DataConfig
from distillbench.data.dataset import DatasetArrays
from distillbench.errors import UserError

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
IMAGE_SHAPE = (3, 32, 32)
SYNTHETIC_MARK = "SYNTHETIC"  # in batch_label of generated batches: never report them as CIFAR-10

MAX_ARRAY_BYTES = 1 << 31  # a real batch's data is 30 MB; nothing larger is believed


class _CorruptBatch(pickle.UnpicklingError):
    """The pickle is not shaped like a CIFAR-10 batch."""


class _ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a callable that real CIFAR-10 batches never contain."""


class _DtypeStub:
    """Stands in for ``numpy.dtype(name, align, copy)`` while unpickling: records, calls nothing."""

    def __init__(self, name: object = None, align: object = 0, copy: object = 0):
        self.name = name

    def __setstate__(self, state: object) -> None:
        pass  # byte order and flags of a one-byte type: nothing to keep

    def resolve(self) -> np.dtype:
        if self.name not in _ALLOWED_DTYPES:
            raise _CorruptBatch(f"array of type {self.name!r}; CIFAR-10 holds uint8 pixels")
        return np.dtype(self.name)


class _ArrayStub:
    """Stands in for ``numpy.core.multiarray._reconstruct(ndarray, ...)`` and its ``__setstate__``.

    numpy's own ``__setstate__`` trusts its arguments: fed a corrupt pickle's state it can crash the
    interpreter (seen while fuzzing). The state is only recorded here, and ``resolve`` builds the
    array with ``np.frombuffer`` after checking every field."""

    def __init__(self, subtype: object = None, shape: object = None, code: object = None):
        if subtype is not _NDARRAY:
            raise _CorruptBatch("array of an unexpected class")
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state

    def resolve(self) -> np.ndarray:
        state = self.state
        if not (isinstance(state, tuple) and len(state) == 5):
            raise _CorruptBatch("array without a valid state")
        _, shape, dtype, fortran, data = state
        if not isinstance(dtype, _DtypeStub):
            raise _CorruptBatch("array without a dtype")
        dtype = dtype.resolve()
        if not (isinstance(shape, tuple) and all(type(n) is int and 0 <= n for n in shape)):
            raise _CorruptBatch(f"array shape {shape!r}")
        if isinstance(data, str):  # Python 2's str, decoded as latin-1 by the unpickler
            data = data.encode("latin1")
        if not isinstance(data, bytes):
            raise _CorruptBatch("array without raw data")
        size = 1
        for n in shape:
            size *= n
        if size * dtype.itemsize != len(data) or len(data) > MAX_ARRAY_BYTES:
            raise _CorruptBatch(f"array shape {shape} does not match its {len(data)} bytes of data")
        return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def _encode_latin1(text: object, encoding: object = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 uses it to write bytes in protocol-2 pickles; any other codec
    (some decompress, some run more code) is refused."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _ForbiddenGlobal(f"_codecs.encode with codec {encoding!r}")
    return text.encode("latin1")


_ALLOWED_DTYPES = ("u1",)


class _NdarrayName:
    """``numpy.ndarray`` appears in a batch only as _reconstruct's first argument. This inert marker
    stands in for it, so a pickle that calls it (an array of uninitialised memory, of any size)
    fails as corrupt instead."""


_NDARRAY = _NdarrayName()
# ndarray pickles name their rebuild function by module; numpy 2 moved it to numpy._core.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy._core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeStub,
    ("_codecs", "encode"): _encode_latin1,
}


class _BatchUnpickler(pickle._Unpickler):  # pure Python: no C-level state for a corrupt file to break
    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _ForbiddenGlobal(f"{module}.{name}") from None


def _resolve(obj: object, depth: int = 0) -> object:
    """The unpickled object with every array stand-in replaced by its validated array."""
    if depth > 4:
        raise _CorruptBatch("nesting deeper than a CIFAR-10 batch")
    if isinstance(obj, _ArrayStub):
        return obj.resolve()
    if isinstance(obj, _DtypeStub):
        raise _CorruptBatch("a dtype outside an array")
    if isinstance(obj, dict):
        return {_resolve(k, depth + 1): _resolve(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, depth + 1) for v in obj]
    return obj


def _unpickle(path: Path) -> object:
    try:
        with open(path, "rb") as handle:
            return _resolve(_BatchUnpickler(handle, encoding="latin1").load())
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
    except OSError as exc:
        raise UserError(f"CIFAR-10 file {path} could not be read ({exc.strerror or exc}).") from None
    except Exception as exc:  # noqa: BLE001 - whatever a corrupt pickle raises, the file is corrupt
        raise UserError(
            f"CIFAR-10 file {path} is truncated or not a CIFAR pickle ({type(exc).__name__}: "
            f"{str(exc)[:200]}); re-extract it from the official archive."
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
    data, labels = batch["data"], _labels(batch["labels"], path)
    pixels = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        shape = getattr(data, "shape", None)
        raise UserError(
            f"CIFAR-10 file {path}: 'data' must be a uint8 array of shape (N, {pixels}), "
            f"got {type(data).__name__} {getattr(data, 'dtype', '')} {shape}."
        )
    if len(labels) != len(data):
        raise UserError(
            f"CIFAR-10 file {path}: 'labels' must be {len(data)} integers, one per image, got {len(labels)}."
        )
    label = batch.get("batch_label", "")
    label = label.decode("latin1") if isinstance(label, bytes) else str(label)
    return data.reshape(-1, *IMAGE_SHAPE), labels, label


def _labels(raw: object, path: Path) -> np.ndarray:
    """A batch's ``labels`` list as int64, each checked to name one of the classes."""
    values = raw.tolist() if isinstance(raw, np.ndarray) and raw.ndim == 1 else raw
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        raise UserError(f"CIFAR-10 file {path}: 'labels' must be a list of integers, one per image.")
    if not all(0 <= v < len(CLASS_NAMES) for v in values):
        found = f"{min(values)}..{max(values)}"
        raise UserError(f"CIFAR-10 file {path}: labels must lie in 0..{len(CLASS_NAMES) - 1}, found {found}.")
    return np.asarray(values, dtype=np.int64)


def read_class_names(path: Path) -> tuple[str, ...]:
    meta = _normalise_keys(_unpickle(path), path)
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != len(CLASS_NAMES):
        raise UserError(f"CIFAR-10 file {path}: 'label_names' must list {len(CLASS_NAMES)} class names.")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def read_cifar10_dir(directory: Path, origin: str = "local directory") -> DatasetArrays:
    """Read an extracted ``cifar-10-batches-py`` directory (no network, no checksums); ``origin``
    says for the report how the directory came to be."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise UserError(
            f"Data directory {directory} does not exist. Point --data-dir (data.dir) at an extracted "
            "cifar-10-batches-py directory, or leave it out to download CIFAR-10."
        )
    train = [read_batch(directory / name) for name in TRAIN_FILES]
    test_images, test_labels, test_label = read_batch(directory / TEST_FILE)
    synthetic = any(SYNTHETIC_MARK in label for _, _, label in [*train, (None, None, test_label)])
    source = f"{origin} {directory}"
    return DatasetArrays(
        train_images=np.concatenate([images for images, _, _ in train]),
        train_labels=np.concatenate([labels for _, labels, _ in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=read_class_names(directory / META_FILE),
        source=f"GENERATED data in CIFAR-10 format ({source}), not CIFAR-10" if synthetic else source,
        synthetic=synthetic,
    )


def read_cifar10(cfg: DataConfig) -> DatasetArrays:
    """The ``cifar10`` dataset: ``data.dir`` if given, else torchvision's verified download."""
    if cfg.dir is not None:
        return read_cifar10_dir(cfg.dir)
    return read_cifar10_dir(download_cifar10(cfg.download_root), "torchvision download (md5-verified) in")


def download_cifar10(root: Path) -> Path:
    """torchvision's CIFAR-10 download (md5-verified archive) into ``root``; returns the batch dir."""
    from torchvision.datasets import CIFAR10

    root = Path(root).expanduser()
    try:
        CIFAR10(str(root), train=True, download=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad checksum a RuntimeError
        raise UserError(
            f"Could not download CIFAR-10 into {root} ({type(exc).__name__}: {exc}): no network, or the "
            "archive did not match its published md5 checksum (a damaged download is never used). Without network, "
            "pass --data-dir (data.dir) pointing at an extracted cifar-10-batches-py directory, and "
            "set weights.resnet50 / weights.vgg16 to local weight files (weights: PATH)."
        ) from None
    return root / CIFAR10.base_folder
