"""Hostile batch files: every corruption loads correctly or stops with the one-paragraph error.

Never a traceback (a corrupt pickle used to raise LookupError, MemoryError, and could even crash the
interpreter inside numpy), never code run."""

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillbench.data.cifar10 import read_batch
from distillbench.data.synthetic import _batch, dumps_py2
from distillbench.errors import UserError

_RNG = np.random.default_rng(0)
LABELS = _RNG.integers(0, 10, 4)
IMAGES = _RNG.integers(0, 256, (4, 3072), dtype=np.uint8)
BLOB = dumps_py2(_batch("SYNTHETIC fuzz batch", IMAGES, LABELS))
# The opcodes (everything but the pixel string): where a flipped byte changes the pickle's structure.
STRUCTURE = [i for i in range(len(BLOB)) if i < 240 or i >= len(BLOB) - 420]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read(tmp_path, data: bytes):
    path = tmp_path / "data_batch_1"
    path.write_bytes(data)
    try:
        images, labels, _ = read_batch(path)
    except UserError as exc:
        assert "data_batch_1" in str(exc)
        return None
    assert images.dtype == np.uint8 and images.shape == (len(labels), 3, 32, 32)
    assert labels.dtype == np.int64 and ((0 <= labels) & (labels < 10)).all()
    return images, labels


def test_the_intact_batch_reads_back(tmp_path):
    images, labels = _read(tmp_path, BLOB)
    np.testing.assert_array_equal(images.reshape(4, -1), IMAGES)
    np.testing.assert_array_equal(labels, LABELS)


@FUZZ
@given(offsets=st.lists(st.sampled_from(STRUCTURE), min_size=1, max_size=3), values=st.binary(min_size=3, max_size=3))
def test_flipped_bytes_load_or_stop_with_the_error(tmp_path, offsets, values):
    data = bytearray(BLOB)
    for offset, value in zip(offsets, values):
        data[offset] = value
    _read(tmp_path, bytes(data))


@FUZZ
@given(length=st.integers(min_value=0, max_value=len(BLOB) - 1))
def test_truncated_files_stop_with_the_error(tmp_path, length):
    assert _read(tmp_path, BLOB[:length]) is None


def _pickle_with(global_ref: bytes, args: bytes) -> bytes:
    """A protocol-2 pickle: ``module.name(*args)`` where args is pickled opcode text."""
    return b"\x80\x02c" + global_ref + b"\n" + args + b"R."


@pytest.mark.parametrize(
    "payload, message",
    [
        (_pickle_with(b"os\nsystem", b"(X\x04\x00\x00\x00trueto"), "asks to call os.system"),
        # numpy.ndarray called directly: an array of uninitialised memory, of any size
        (_pickle_with(b"numpy\nndarray", b"(J\x00\x00\x00\x40X\x02\x00\x00\x00u1t"), "truncated or not a CIFAR pickle"),
        (_pickle_with(b"_codecs\nencode", b"(X\x01\x00\x00\x00xX\n\x00\x00\x00zlib_codect"), "codec 'zlib_codec'"),
        (_pickle_with(b"_codecs\nencode", b"(X\x01\x00\x00\x00xX\x0b\x00\x00\x00no-such-onet"), "codec 'no-such-one'"),
    ],
)
def test_globals_are_refused_or_restricted(tmp_path, payload, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(payload)
    with pytest.raises(UserError, match=message):
        read_batch(path)


def test_an_array_whose_shape_lies_about_its_data_is_refused(tmp_path):
    """A huge shape over a few bytes of data used to reach numpy and raise MemoryError."""
    batch = pickle.loads(BLOB, encoding="latin1")
    lying = BLOB.replace(b"K\x04M\x00\x0c\x86", b"J\xff\xff\xff\x3fM\x00\x0c\x86")  # shape (4, 3072) -> (2**30-1, 3072)
    assert lying != BLOB and batch["data"].shape == (4, 3072)
    with pytest.raises(UserError, match=r"does not match its .* bytes of data"):
        _read_strict(tmp_path, lying)


def _read_strict(tmp_path, data: bytes):
    path = tmp_path / "data_batch_1"
    path.write_bytes(data)
    return read_batch(path)
