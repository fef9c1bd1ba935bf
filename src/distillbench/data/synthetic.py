"""Generated, learnable data written in CIFAR-10's exact on-disk format, for tests and benchmarks.

Never CIFAR-10 results: the images are class prototypes plus noise. The batches are written as
Python 2's cPickle wrote the real ones (protocol 2, byte strings as BINSTRING, numpy's
``numpy.core.multiarray`` names), so the reader is exercised on the real format.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np

from distillbench.atomic import write_bytes
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
        """An ndarray as numpy 1.x on Python 2 pickled it (uint8 only: all CIFAR-10 holds)."""
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


def class_prototypes(rng: np.random.Generator, separation: float, size: int = IMAGE_SHAPE[1]) -> np.ndarray:
    """Ten smooth colour patterns, float32 [10, 3, H, W] in 0..255: a pattern shared by all classes,
    with a share ``separation`` of a class's own pattern mixed in (small = hard to tell apart)."""
    coarse = rng.uniform(0, 255, size=(len(CLASS_NAMES), 3, 4, 4)).astype(np.float32)
    patterns = np.kron(coarse, np.ones((size // 4, size // 4), dtype=np.float32))
    return (1 - separation) * patterns.mean(axis=0, keepdims=True) + separation * patterns


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
