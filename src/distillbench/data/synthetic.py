"""Generated, learnable data written in each supported dataset's exact on-disk format, for tests,
benchmarks and offline trials (``distillbench synth-data --format cifar10|cifar100|svhn|imagefolder``).

Never results on a real dataset: the images are class prototypes plus noise, and every format
carries a mark its reader turns into ``synthetic=True`` (CIFAR: ``SYNTHETIC`` in each batch's
``batch_label``; SVHN: an extra .mat variable; image folders: a ``SYNTHETIC`` file beside
``train/``). The CIFAR batches are written as Python 2's cPickle wrote the real ones (protocol 2,
byte strings as BINSTRING, numpy's ``numpy.core.multiarray`` names), SVHN's as MATLAB v5 files
(``scipy.io.savemat``), so the readers are exercised on the real formats.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from distillbench.atomic import write_atomic, write_bytes
from distillbench.data import cifar100, imagefolder, svhn
from distillbench.data.cifar10 import (
    CLASS_NAMES,
    IMAGE_SHAPE,
    META_FILE,
    SYNTHETIC_MARK,
    TEST_FILE,
    TRAIN_FILES,
)


class _Global:
    """A reference to a module attribute, pickled by the name Python 2 used for it."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class _Reduce:
    """``func(*args)`` then ``__setstate__(state)``, pickled as REDUCE + BUILD."""

    def __init__(self, func: _Global, args: tuple, state: tuple):
        self.func, self.args, self.state = func, args, state


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us choose the opcodes
    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)

    def save_global_ref(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))

    def save_reduce_obj(self, obj: _Reduce) -> None:
        self.save(obj.func)
        self.save(obj.args)
        self.write(pickle.REDUCE)
        self.save(obj.state)
        self.write(pickle.BUILD)

    def save_uint8_array(self, array: np.ndarray) -> None:
        """An ndarray as numpy 1.x on Python 2 pickled it (uint8 only: all CIFAR holds)."""
        if array.dtype != np.uint8:
            raise TypeError(f"only uint8 arrays are written, got {array.dtype}")
        dtype = _Reduce(_Global("numpy", "dtype"), ("u1", 0, 1), (3, "|", None, None, None, -1, -1, 0))
        state = (1, array.shape, dtype, False, np.ascontiguousarray(array).tobytes())
        reconstruct = _Global("numpy.core.multiarray", "_reconstruct")
        self.save_reduce_obj(_Reduce(reconstruct, (_Global("numpy", "ndarray"), (0,), "b"), state))

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str
    dispatch[_Global] = save_global_ref
    dispatch[_Reduce] = save_reduce_obj
    dispatch[np.ndarray] = save_uint8_array


def dumps_py2(obj: object) -> bytes:
    """Pickle ``obj`` (dicts, lists, str, int, uint8 arrays) byte-for-byte as Python 2 did."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def make_images(labels: np.ndarray, rng: np.random.Generator, prototypes: np.ndarray, noise: float) -> np.ndarray:
    """Images = the class's smooth prototype, randomly shifted, plus pixel noise; uint8 NCHW."""
    images = prototypes[labels].copy()
    shifts = rng.integers(-3, 4, size=(len(labels), 2))
    for i, (dy, dx) in enumerate(shifts):
        images[i] = np.roll(images[i], (int(dy), int(dx)), axis=(1, 2))
    images += rng.normal(0.0, noise, size=images.shape).astype(np.float32)
    return np.clip(images, 0, 255).astype(np.uint8)


def class_prototypes(
    rng: np.random.Generator,
    separation: float,
    size: int = IMAGE_SHAPE[1],
    classes: int = len(CLASS_NAMES),
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Smooth colour patterns, float32 [classes, 3, H, W] in 0..255: a pattern shared by all classes,
    with a share ``separation`` of a class's own pattern mixed in (small = hard to tell apart).

    With ``groups`` (each class's group, as CIFAR-100's superclasses), half of a class's own pattern
    is its group's: classes of a group look alike, as a superclass's do, and are confused more."""
    coarse = rng.uniform(0, 255, size=(classes, 3, 4, 4)).astype(np.float32)
    if groups is not None:
        shared = rng.uniform(0, 255, size=(int(groups.max()) + 1, 3, 4, 4)).astype(np.float32)
        coarse = 0.5 * coarse + 0.5 * shared[groups]
    patterns = np.kron(coarse, np.ones((size // 4, size // 4), dtype=np.float32))
    return (1 - separation) * patterns.mean(axis=0, keepdims=True) + separation * patterns


def balanced_labels(rng: np.random.Generator, count: int, classes: int) -> np.ndarray:
    """``count`` labels in shuffled order, every class as often as the others (within one)."""
    return rng.permutation(np.arange(count) % classes)


def class_names(prefix: str, count: int) -> list[str]:
    """``prefix_00`` .. for ``count`` classes, zero-padded so that they sort in label order."""
    width = len(str(count - 1))
    return [f"{prefix}_{index:0{width}d}" for index in range(count)]


def write_cifar10_like(
    directory: Path,
    n_train: int = 50_000,
    n_test: int = 10_000,
    seed: int = 0,
    noise: float = 100.0,
    separation: float = 0.15,
) -> Path:
    """Write ``data_batch_1..5``, ``test_batch`` and ``batches.meta`` with generated images.

    The defaults make a task the small CNN learns to roughly 80% in three epochs of 5,000 images:
    learnable, but not so easy that every table reads 100%.
    """
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    prototypes = class_prototypes(rng, separation)
    train_labels = rng.integers(0, len(CLASS_NAMES), size=n_train)
    test_labels = rng.integers(0, len(CLASS_NAMES), size=n_test)
    chunks = np.array_split(np.arange(n_train), len(TRAIN_FILES))
    for number, (name, index) in enumerate(zip(TRAIN_FILES, chunks), start=1):
        labels = train_labels[index]
        batch = _batch(
            f"{SYNTHETIC_MARK} training batch {number} of 5", make_images(labels, rng, prototypes, noise), labels
        )
        write_bytes(directory / name, dumps_py2(batch))
    test_batch = _batch(
        f"{SYNTHETIC_MARK} testing batch 1 of 1", make_images(test_labels, rng, prototypes, noise), test_labels
    )
    write_bytes(directory / TEST_FILE, dumps_py2(test_batch))
    meta = {"num_cases_per_batch": len(chunks[0]), "label_names": list(CLASS_NAMES), "num_vis": 3072}
    write_bytes(directory / META_FILE, dumps_py2(meta))
    return directory


def _batch(label: str, images: np.ndarray, labels: np.ndarray) -> dict[str, object]:
    return {
        "batch_label": label,
        "labels": [int(v) for v in labels],
        "data": images.reshape(len(images), -1),
        "filenames": [f"synthetic_{i:06d}.png" for i in range(len(images))],
    }


CLASSES_PER_SUPERCLASS = 5  # as CIFAR-100's 20 superclasses of 5 classes


def write_cifar100_like(
    directory: Path,
    n_train: int = 50_000,
    n_test: int = 10_000,
    classes: int = 100,
    seed: int = 0,
    noise: float = 100.0,
    separation: float = 0.15,
) -> Path:
    """Write CIFAR-100's ``train``, ``test`` and ``meta`` with generated images of ``classes`` classes.

    The classes fall into ceil(classes / 5) superclasses (class i in superclass i mod that, so that a
    superclass's classes are not neighbours in label order, as in CIFAR-100), whose classes look alike.
    Every class appears in both files, as evenly as the counts allow (``n_test >= classes``)."""
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    groups = np.arange(classes) % math.ceil(classes / CLASSES_PER_SUPERCLASS)
    prototypes = class_prototypes(rng, separation, classes=classes, groups=groups)
    splits = (
        (cifar100.TRAIN_FILE, n_train, "training batch 1 of 1"),
        (cifar100.TEST_FILE, n_test, "testing batch 1 of 1"),
    )
    for name, count, title in splits:
        labels = balanced_labels(rng, count, classes)
        batch = {
            "filenames": [f"synthetic_{i:06d}.png" for i in range(count)],
            "batch_label": f"{SYNTHETIC_MARK} {title}",
            "fine_labels": [int(v) for v in labels],
            "coarse_labels": [int(v) for v in groups[labels]],
            "data": make_images(labels, rng, prototypes, noise).reshape(count, -1),
        }
        write_bytes(directory / name, dumps_py2(batch))
    meta = {
        "fine_label_names": class_names("class", classes),
        "coarse_label_names": class_names("superclass", int(groups.max()) + 1),
    }
    write_bytes(directory / cifar100.META_FILE, dumps_py2(meta))
    return directory


def write_svhn_like(
    directory: Path,
    n_train: int = 73_257,
    n_test: int = 26_032,
    n_extra: int = 0,
    seed: int = 0,
    noise: float = 100.0,
    separation: float = 0.15,
) -> Path:
    """Write SVHN's ``train_32x32.mat`` and ``test_32x32.mat`` (and ``extra_32x32.mat`` if ``n_extra``)
    with generated images of the ten digits: ``X`` uint8 [32, 32, 3, N], ``y`` [N, 1] in 1..10 (10
    for the digit 0), and the variable that marks them generated."""
    import scipy.io

    directory = Path(directory)
    rng = np.random.default_rng(seed)
    prototypes = class_prototypes(rng, separation, classes=len(svhn.CLASS_NAMES))
    for name, count in ((svhn.TRAIN_FILE, n_train), (svhn.TEST_FILE, n_test), (svhn.EXTRA_FILE, n_extra)):
        if count == 0:
            continue
        labels = balanced_labels(rng, count, len(svhn.CLASS_NAMES))
        variables = {
            "X": make_images(labels, rng, prototypes, noise).transpose(2, 3, 1, 0),  # [N, C, H, W] -> [H, W, C, N]
            "y": np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1),
            svhn.SYNTHETIC_VARIABLE: f"{SYNTHETIC_MARK}: generated by distillbench synth-data, not SVHN",
        }
        write_atomic(directory / name, lambda handle, variables=variables: scipy.io.savemat(handle, variables))
    return directory


def write_imagefolder_like(
    directory: Path,
    n_train: int = 50_000,
    n_test: int = 10_000,
    classes: int = 10,
    seed: int = 0,
    noise: float = 100.0,
    separation: float = 0.15,
    size: int = IMAGE_SHAPE[1],
) -> Path:
    """Write ``train/<class>/*.png`` and ``test/<class>/*.png`` (``size`` pixels a side, a multiple of
    4) with generated images of ``classes`` classes, and the ``SYNTHETIC`` file that marks them
    generated (first: a folder left half-written is still marked)."""
    directory = Path(directory)
    write_bytes(
        directory / imagefolder.SYNTHETIC_MARKER,
        b"Generated by distillbench synth-data: never results on a real dataset.\n",
    )
    rng = np.random.default_rng(seed)
    prototypes = class_prototypes(rng, separation, size=size, classes=classes)
    names = class_names("class", classes)
    for split, count in (("train", n_train), ("test", n_test)):
        labels = balanced_labels(rng, count, classes)
        for name in names:
            (directory / split / name).mkdir(parents=True, exist_ok=True)
        # One file per image, not written atomically: a generated folder is rewritten, never resumed.
        for index, (image, label) in enumerate(zip(make_images(labels, rng, prototypes, noise), labels)):
            Image.fromarray(image.transpose(1, 2, 0)).save(directory / split / names[label] / f"{index:06d}.png")
    return directory


@dataclass(frozen=True)
class SynthFormat:
    """One format ``synth-data`` writes: its writer, its dataset's name and its official sizes."""

    dataset: str  # named in messages: "generated data in CIFAR-100 format, not CIFAR-100"
    writer: Callable[..., Path]  # (directory, n_train, n_test, [classes,] seed=...)
    train: int  # default image counts: the real dataset's
    test: int
    classes: int  # the default number of classes
    fixed_classes: bool  # the format has exactly ``classes`` classes (CIFAR-10, SVHN's digits)


SYNTH_FORMATS = {
    "cifar10": SynthFormat("CIFAR-10", write_cifar10_like, 50_000, 10_000, len(CLASS_NAMES), True),
    "cifar100": SynthFormat("CIFAR-100", write_cifar100_like, 50_000, 10_000, 100, False),
    "svhn": SynthFormat("SVHN", write_svhn_like, 73_257, 26_032, len(svhn.CLASS_NAMES), True),
    "imagefolder": SynthFormat("image-folder", write_imagefolder_like, 50_000, 10_000, 10, False),
}


def write_synthetic(name: str, directory: Path, n_train: int, n_test: int, classes: int, seed: int = 0) -> Path:
    """Generated data in format ``name`` (a key of ``SYNTH_FORMATS``) in ``directory``."""
    spec = SYNTH_FORMATS[name]
    if spec.fixed_classes:
        return spec.writer(directory, n_train, n_test, seed=seed)
    return spec.writer(directory, n_train, n_test, classes, seed=seed)
