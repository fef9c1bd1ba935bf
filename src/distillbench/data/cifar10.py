"""CIFAR-10 on disk: torchvision's verified download, and a safe reader for extracted batches.

The batches are Python 2 pickles. Pickles can run code, so they are read with an unpickler that
admits only what real CIFAR batches contain (dicts, lists, str, int and uint8 arrays). CIFAR-100's
pickles (``data.cifar100``) are read by the same unpickler and the same checks (``PickleLayout``
names the dataset in their errors).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
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

MAX_ARRAY_BYTES = 1 << 31  # a real batch's data is 30 MB (CIFAR-100's train, 150 MB); nothing larger is believed
MAX_CLASSES = 1000  # class names a meta file may list (CIFAR-100's 100, generated sets' more)


class _CorruptBatch(pickle.UnpicklingError):
    """The pickle is not shaped like a CIFAR batch."""


class _ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a callable that real CIFAR batches never contain."""


class _DtypeStub:
    """Stands in for ``numpy.dtype(name, align, copy)`` while unpickling: records, calls nothing."""

    def __init__(self, name: object = None, align: object = 0, copy: object = 0):
        self.name = name

    def __setstate__(self, state: object) -> None:
        pass  # byte order and flags of a one-byte type: nothing to keep

    def resolve(self) -> np.dtype:
        if self.name not in _ALLOWED_DTYPES:
            raise _CorruptBatch(f"array of type {self.name!r}; CIFAR holds uint8 pixels")
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
        raise _CorruptBatch("nesting deeper than a CIFAR batch")
    if isinstance(obj, _ArrayStub):
        return obj.resolve()
    if isinstance(obj, _DtypeStub):
        raise _CorruptBatch("a dtype outside an array")
    if isinstance(obj, dict):
        return {_resolve(k, depth + 1): _resolve(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):  # a batch's lists hold 10,000s of labels and file names: no call for each
        return [v if type(v) in _PLAIN_TYPES else _resolve(v, depth + 1) for v in obj]
    return obj


_PLAIN_TYPES = frozenset({int, str, bytes, float, bool, type(None)})  # nothing to resolve inside


@dataclass(frozen=True)
class PickleLayout:
    """One dataset's pickles, as its error messages describe them."""

    dataset: str  # "CIFAR-10"
    folder: str  # the extracted archive's directory
    files: tuple[str, ...]

    def expected(self) -> str:
        return f"an extracted {self.folder} directory holding {', '.join(self.files[:-1])} and {self.files[-1]}"


CIFAR10_LAYOUT = PickleLayout("CIFAR-10", "cifar-10-batches-py", (*TRAIN_FILES, TEST_FILE, META_FILE))


def unpickle(path: Path, layout: PickleLayout = CIFAR10_LAYOUT) -> dict[str, object]:
    """One of ``layout``'s pickles, read by the restricted unpickler: a dictionary with str keys."""
    try:
        with open(path, "rb") as handle:
            loaded = _resolve(_BatchUnpickler(handle, encoding="latin1").load())
    except FileNotFoundError:
        raise UserError(
            f"{layout.dataset} file {path} is missing. --data-dir must be {layout.expected()}; "
            f"or leave it out to download {layout.dataset}."
        ) from None
    except _ForbiddenGlobal as exc:
        raise UserError(
            f"Refusing to load {path}: it asks to call {exc}, which real {layout.dataset} files never "
            "contain, so it may be malicious. Replace it with the file from the official archive."
        ) from None
    except OSError as exc:
        raise UserError(f"{layout.dataset} file {path} could not be read ({exc.strerror or exc}).") from None
    except Exception as exc:  # noqa: BLE001 - whatever a corrupt pickle raises, the file is corrupt
        raise UserError(
            f"{layout.dataset} file {path} is truncated or not a CIFAR pickle ({type(exc).__name__}: "
            f"{str(exc)[:200]}); re-extract it from the official archive."
        ) from None
    if not isinstance(loaded, dict):
        raise UserError(f"{layout.dataset} file {path} holds a {type(loaded).__name__}, not a dictionary.")
    return {text(k): v for k, v in loaded.items()}


def text(value: object) -> str:
    """A Python 2 str as unpickled (bytes or latin-1 str) as str."""
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def batch_images(batch: dict[str, object], path: Path, layout: PickleLayout = CIFAR10_LAYOUT) -> np.ndarray:
    """A batch's ``data`` (uint8 [N, 3072], rows R then G then B planes) as uint8 [N, 3, 32, 32]."""
    if "data" not in batch:
        raise UserError(f"{layout.dataset} file {path} has no 'data' entry; it is not a {layout.dataset} batch.")
    data = batch["data"]
    pixels = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        shape = getattr(data, "shape", None)
        raise UserError(
            f"{layout.dataset} file {path}: 'data' must be a uint8 array of shape (N, {pixels}), "
            f"got {type(data).__name__} {getattr(data, 'dtype', '')} {shape}."
        )
    return data.reshape(-1, *IMAGE_SHAPE)


def batch_labels(
    batch: dict[str, object], key: str, count: int, classes: int, path: Path, layout: PickleLayout = CIFAR10_LAYOUT
) -> np.ndarray:
    """A batch's ``key`` list as int64: ``count`` integers (one per image), each in ``range(classes)``."""
    if key not in batch:
        raise UserError(f"{layout.dataset} file {path} has no {key!r} entry; it is not a {layout.dataset} batch.")
    raw = batch[key]
    values = raw.tolist() if isinstance(raw, np.ndarray) and raw.ndim == 1 else raw
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        raise UserError(f"{layout.dataset} file {path}: {key!r} must be a list of integers, one per image.")
    if len(values) != count:
        raise UserError(
            f"{layout.dataset} file {path}: {key!r} must be {count} integers, one per image, got {len(values)}."
        )
    if not all(0 <= v < classes for v in values):
        found = f"{min(values)}..{max(values)}"
        raise UserError(f"{layout.dataset} file {path}: {key} must lie in 0..{classes - 1}, found {found}.")
    return np.asarray(values, dtype=np.int64)


def batch_names(
    meta: dict[str, object], key: str, path: Path, layout: PickleLayout = CIFAR10_LAYOUT, count: int | None = None
) -> tuple[str, ...]:
    """A meta file's ``key``: distinct, non-empty names, ``count`` of them if given (else 1..MAX_CLASSES)."""
    names = meta.get(key)
    if isinstance(names, list) and all(isinstance(n, (str, bytes)) for n in names):
        names = tuple(text(n) for n in names)
        wanted = len(names) == count if count is not None else 1 <= len(names) <= MAX_CLASSES
        if wanted and all(names) and len(set(names)) == len(names):
            return names
    number = f"{count}" if count is not None else f"1 to {MAX_CLASSES:,}"
    raise UserError(f"{layout.dataset} file {path}: {key!r} must list {number} distinct class names.")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """One batch file as (images uint8 [N, 3, 32, 32], labels int64 [N], batch label), validated."""
    batch = unpickle(path)
    images = batch_images(batch, path)
    labels = batch_labels(batch, "labels", len(images), len(CLASS_NAMES), path)
    return images, labels, text(batch.get("batch_label", ""))


def read_class_names(path: Path) -> tuple[str, ...]:
    return batch_names(unpickle(path), "label_names", path, count=len(CLASS_NAMES))


def read_cifar10_dir(directory: Path, origin: str = "local directory") -> DatasetArrays:
    """Read an extracted ``cifar-10-batches-py`` directory (no network, no checksums); ``origin``
    says for the report how the directory came to be."""
    directory = existing_directory(directory, CIFAR10_LAYOUT)
    train = [read_batch(directory / name) for name in TRAIN_FILES]
    test_images, test_labels, test_label = read_batch(directory / TEST_FILE)
    synthetic = any(SYNTHETIC_MARK in label for _, _, label in [*train, (None, None, test_label)])
    return DatasetArrays(
        train_images=np.concatenate([images for images, _, _ in train]),
        train_labels=np.concatenate([labels for _, labels, _ in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=read_class_names(directory / META_FILE),
        source=describe_source("CIFAR-10", f"{origin} {directory}", synthetic),
        synthetic=synthetic,
    )


def existing_directory(directory: Path, layout: PickleLayout) -> Path:
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise UserError(
            f"Data directory {directory} does not exist. Point --data-dir (data.dir) at {layout.expected()}, "
            f"or leave it out to download {layout.dataset}."
        )
    return directory


def describe_source(dataset: str, source: str, synthetic: bool) -> str:
    """Where the data came from, for the report; generated data is never called by the dataset's name."""
    return f"GENERATED data in {dataset} format ({source}), not {dataset}" if synthetic else source


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
        raise download_error("CIFAR-10", root, exc, CIFAR10_LAYOUT.expected(), "cifar10") from None
    return root / CIFAR10.base_folder


def download_error(dataset: str, root: Path, exc: Exception, expected: str, synth_format: str) -> UserError:
    """The one-paragraph error of a failed download, with the ways to go on offline."""
    return UserError(
        f"Could not download {dataset} into {root} ({type(exc).__name__}: {exc}): no network, or a file did not "
        "match its published md5 checksum (a damaged download is never used). Without network, pass --data-dir "
        f"(data.dir) pointing at {expected}, and set weights.resnet50 / weights.vgg16 to local weight files "
        f"(weights: PATH). To try the study offline, `distillbench synth-data DIR --format {synth_format}` writes "
        f"generated data in {dataset}'s format (its numbers are never {dataset} results) to pass as --data-dir DIR."
    )
