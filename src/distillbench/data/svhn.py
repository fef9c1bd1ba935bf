"""SVHN on disk: torchvision's checksummed download, and a bounded reader of the official .mat files.

Netzer et al. (2011), "Reading Digits in Natural Images with Unsupervised Feature Learning", format
2 (cropped 32x32 digits). ``train_32x32.mat``, ``test_32x32.mat`` and the optional
``extra_32x32.mat`` (``data.svhn_extra``) are MATLAB v5 files, read with ``scipy.io.loadmat`` as
torchvision reads them: ``X`` is uint8 [32, 32, 3, N] (height, width, channel, image) and ``y`` the
labels [N, 1] in 1..10, where 10 is the digit 0 (mapped to 0 here, as torchvision does). A MATLAB
file cannot run code, but its header can promise anything: the variables' shapes and types are read
first (``scipy.io.whosmat``, no data) and checked before a byte of pixels is loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillbench.config import DataConfig
from distillbench.data.cifar10 import describe_source, download_error
from distillbench.data.dataset import DatasetArrays
from distillbench.errors import UserError

TRAIN_FILE, TEST_FILE, EXTRA_FILE = "train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"
CLASS_NAMES = tuple(str(digit) for digit in range(10))
IMAGE_SIZE = 32
SYNTHETIC_VARIABLE = "distillbench_synthetic"  # a variable only generated files hold: never called SVHN
MAX_IMAGES = 2_000_000  # extra_32x32.mat has 531,131 (1.6 GB); nothing larger is believed
DOWNLOAD_FOLDER = "svhn"  # under data.download_root
EXPECTED = f"a directory holding {TRAIN_FILE} and {TEST_FILE} (and {EXTRA_FILE} with data.svhn_extra)"


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
    """One SVHN file as (images uint8 [N, 3, 32, 32], labels int64 [N] in 0..9, generated?), validated."""
    import scipy.io

    try:
        variables = {name: (shape, kind) for name, shape, kind in scipy.io.whosmat(str(path))}
        _check_header(variables, path)  # before any data is read: a header can promise terabytes
        loaded = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    except FileNotFoundError:
        raise UserError(
            f"SVHN file {path} is missing. --data-dir (data.dir) must be {EXPECTED}; or leave it out to download SVHN."
        ) from None
    except UserError:
        raise
    except OSError as exc:
        raise UserError(f"SVHN file {path} could not be read ({exc.strerror or exc}).") from None
    except Exception as exc:  # noqa: BLE001 - whatever scipy raises on a damaged file, the file is damaged
        raise UserError(
            f"SVHN file {path} is truncated or not a MATLAB v5 file ({type(exc).__name__}: {str(exc)[:200]}); "
            "download it again from the official site."
        ) from None
    images, labels = loaded.get("X"), loaded.get("y")
    count = _count(variables)
    if not (
        isinstance(images, np.ndarray)
        and images.dtype == np.uint8
        and images.shape[:3] == (32, 32, 3)
        and images.size == count * 32 * 32 * 3
    ):
        _refuse(path, f"'X' loaded as {getattr(images, 'dtype', None)} {getattr(images, 'shape', None)}")
    if not (isinstance(labels, np.ndarray) and labels.size == count):
        _refuse(path, f"'y' loaded as {getattr(labels, 'shape', None)} for {count} images")
    return _nchw(images), _digits(labels.reshape(-1), path), SYNTHETIC_VARIABLE in variables


def _count(variables: dict[str, tuple[tuple[int, ...], str]]) -> int:
    shape = variables["X"][0]
    return shape[3] if len(shape) == 4 else 1 if len(shape) == 3 else 0


def _check_header(variables: dict[str, tuple[tuple[int, ...], str]], path: Path) -> None:
    """The header's promises checked against the official layout before any data is read."""
    for name in ("X", "y"):
        if name not in variables:
            _refuse(path, f"it has no variable {name!r} (it holds {', '.join(sorted(variables)) or 'nothing'})")
    (image_shape, image_kind), (label_shape, label_kind) = variables["X"], variables["y"]
    # MATLAB drops a trailing dimension of 1: a file of one image has X of shape (32, 32, 3).
    if image_kind != "uint8" or tuple(image_shape[:3]) != (32, 32, 3) or len(image_shape) not in (3, 4):
        _refuse(path, f"'X' is {image_kind} of shape {image_shape}")
    count = _count(variables)
    if not 1 <= count <= MAX_IMAGES:
        _refuse(path, f"'X' holds {count:,} images (at most {MAX_IMAGES:,} are believed)")
    if sorted(label_shape) != [1, count] and tuple(label_shape) != (count,):
        _refuse(path, f"'y' has shape {label_shape} for {count:,} images")
    if label_kind not in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64", "double", "single"):
        _refuse(path, f"'y' is of type {label_kind}")


def _refuse(path: Path, problem: str) -> None:
    raise UserError(
        f"SVHN file {path} is not shaped like SVHN's ({problem}); the official file holds X, uint8 of shape "
        "(32, 32, 3, N), and y, N labels in 1..10. Download it again from the official site."
    )


def _nchw(images: np.ndarray) -> np.ndarray:
    """[H, W, C, N] as a C-ordered [N, C, H, W] (one copy)."""
    return np.ascontiguousarray(images.reshape(IMAGE_SIZE, IMAGE_SIZE, 3, -1).transpose(3, 2, 0, 1))


def _digits(labels: np.ndarray, path: Path) -> np.ndarray:
    """SVHN's labels 1..10 as digits 0..9 (10 is the digit 0; a 0 is taken as 0 too)."""
    values = labels.astype(np.float64)
    if not (np.isfinite(values).all() and (values == np.round(values)).all() and (0 <= values).all()):
        raise UserError(f"SVHN file {path}: 'y' must hold whole numbers from 1 to 10 (10 is the digit 0).")
    digits = values.astype(np.int64)
    if digits.max() > 10:
        raise UserError(
            f"SVHN file {path}: 'y' must lie in 1..10 (10 is the digit 0), found {digits.min()}..{digits.max()}."
        )
    digits[digits == 10] = 0
    return digits


def read_svhn_dir(directory: Path, extra: bool = False, origin: str = "local directory") -> DatasetArrays:
    """Read SVHN's .mat files from ``directory`` (no network, no checksums), with ``extra_32x32.mat``
    added to training if ``extra``; ``origin`` says for the report how the directory came to be."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise UserError(
            f"Data directory {directory} does not exist. Point --data-dir (data.dir) at {EXPECTED}, "
            "or leave it out to download SVHN."
        )
    train = [read_mat(directory / name) for name in (TRAIN_FILE, *([EXTRA_FILE] if extra else []))]
    test_images, test_labels, test_synthetic = read_mat(directory / TEST_FILE)
    synthetic = test_synthetic or any(generated for _, _, generated in train)
    return DatasetArrays(
        train_images=train[0][0] if len(train) == 1 else np.concatenate([images for images, _, _ in train]),
        train_labels=train[0][1] if len(train) == 1 else np.concatenate([labels for _, labels, _ in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=CLASS_NAMES,
        source=describe_source("SVHN", f"{origin} {directory}" + (" (with extra)" if extra else ""), synthetic),
        synthetic=synthetic,
    )


def read_svhn(cfg: DataConfig) -> DatasetArrays:
    """The ``svhn`` dataset: ``data.dir`` if given, else torchvision's checksummed download."""
    if cfg.dir is not None:
        return read_svhn_dir(cfg.dir, cfg.svhn_extra)
    folder = download_svhn(cfg.download_root, cfg.svhn_extra)
    return read_svhn_dir(folder, cfg.svhn_extra, "torchvision download (md5-verified) in")


def download_svhn(root: Path, extra: bool = False) -> Path:
    """The official files (torchvision's URLs and md5) downloaded and checked into ``root/svhn``;
    files already there with their published md5 are kept. Returns that folder."""
    from torchvision.datasets import SVHN
    from torchvision.datasets.utils import download_url

    root = Path(root).expanduser()
    folder = root / DOWNLOAD_FOLDER
    try:
        for split in ("train", "test", *(["extra"] if extra else [])):
            url, filename, md5 = SVHN.split_list[split]
            download_url(url, str(folder), filename, md5)  # skipped when the file is there and checks
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad checksum a RuntimeError
        raise download_error("SVHN", root, exc, EXPECTED, "svhn") from None
    return folder
