"""SVHN from its MATLAB files: orientation, label 10 as the digit 0, the opt-in extra set, and
damaged or lying files refused before their data is loaded. The files are generated in the official
layout (never SVHN)."""

import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from distillbench.config import DataConfig, load_config
from distillbench.data import load_study_data
from distillbench.data.svhn import CLASS_NAMES, MAX_IMAGES, read_mat, read_svhn_dir
from distillbench.data.synthetic import write_svhn_like
from distillbench.errors import UserError

CONFIGS = Path(__file__).parent.parent.parent / "configs"


@pytest.fixture(scope="module")
def svhn_dir(tmp_path_factory) -> Path:
    return write_svhn_like(tmp_path_factory.mktemp("svhn"), 200, 50, n_extra=30, seed=4)


def _official(path: Path, images_hwcn: np.ndarray, labels: np.ndarray, **variables) -> Path:
    """A .mat file laid out as the official ones, without the generated-data mark."""
    scipy.io.savemat(path, {"X": images_hwcn, "y": labels, **variables})
    return path


def test_reads_images_in_order_and_maps_label_10_to_digit_0(tmp_path):
    rng = np.random.default_rng(0)
    hwcn = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    path = _official(tmp_path / "train_32x32.mat", hwcn, np.array([[10], [1], [9], [10], [5]], np.uint8))
    images, labels, synthetic = read_mat(path)
    assert images.shape == (5, 3, 32, 32) and images.flags["C_CONTIGUOUS"]
    for n, c, h, w in [(0, 0, 0, 0), (1, 2, 31, 0), (4, 1, 5, 17), (3, 2, 0, 31)]:
        assert images[n, c, h, w] == hwcn[h, w, c, n]  # X is [height, width, channel, image]
    assert labels.tolist() == [0, 1, 9, 0, 5] and labels.dtype == np.int64
    assert not synthetic


def test_a_file_of_one_image_reads(tmp_path):  # MATLAB drops X's trailing dimension of 1
    path = _official(tmp_path / "test_32x32.mat", np.full((32, 32, 3), 7, np.uint8), np.array([[10]], np.uint8))
    images, labels, _ = read_mat(path)
    assert images.shape == (1, 3, 32, 32) and (images == 7).all() and labels.tolist() == [0]


def test_labels_stored_as_double_read_the_same(tmp_path):
    hwcn = np.zeros((32, 32, 3, 3), np.uint8)
    path = _official(tmp_path / "test_32x32.mat", hwcn, np.array([[10.0], [3.0], [7.0]]))
    assert read_mat(path)[1].tolist() == [0, 3, 7]


def test_reads_the_directory_and_adds_extra_on_request(svhn_dir):
    plain = read_svhn_dir(svhn_dir)
    assert plain.train_images.shape == (200, 3, 32, 32) and plain.test_images.shape == (50, 3, 32, 32)
    assert plain.class_names == CLASS_NAMES == tuple("0123456789")
    assert np.bincount(plain.train_labels).tolist() == [20] * 10  # the writer balances the digits
    assert plain.synthetic and plain.source.startswith("GENERATED data in SVHN format") and plain.superclasses is None
    raw = scipy.io.loadmat(svhn_dir / "train_32x32.mat")
    assert plain.train_labels.tolist() == [0 if v == 10 else int(v) for v in raw["y"].ravel()]
    with_extra = read_svhn_dir(svhn_dir, extra=True)
    assert len(with_extra.train_labels) == 230 and "(with extra)" in with_extra.source
    np.testing.assert_array_equal(with_extra.train_images[:200], plain.train_images)
    np.testing.assert_array_equal(with_extra.train_images[200:], read_mat(svhn_dir / "extra_32x32.mat")[0])


def test_the_registry_reads_it_with_data_svhn_extra(svhn_dir):
    data = load_study_data(DataConfig(dataset="svhn", dir=svhn_dir, val_size=20, svhn_extra=True))
    assert (len(data.train), len(data.val), len(data.test)) == (210, 20, 50) and data.synthetic


def test_a_missing_extra_file_is_named(svhn_dir, tmp_path):
    for name in ("train_32x32.mat", "test_32x32.mat"):
        (tmp_path / name).write_bytes((svhn_dir / name).read_bytes())
    assert len(read_svhn_dir(tmp_path).train_labels) == 200
    with pytest.raises(UserError, match=r"SVHN file .*extra_32x32.mat is missing.*--data-dir"):
        read_svhn_dir(tmp_path, extra=True)


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(UserError, match=r"Data directory .*nowhere does not exist.*train_32x32.mat"):
        read_svhn_dir(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"X": np.zeros((32, 32, 3, 4), np.float64), "y": np.ones((4, 1))}, r"'X' is double of shape \(32, 32, 3, 4\)"),
        ({"X": np.zeros((28, 28, 3, 4), np.uint8), "y": np.ones((4, 1))}, r"'X' is uint8 of shape \(28, 28, 3, 4\)"),
        ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.ones((3, 1))}, r"'y' has shape \(3, 1\) for 4 images"),
        ({"X": np.zeros((32, 32, 3, 4), np.uint8)}, r"it has no variable 'y' \(it holds X\)"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([["a"], ["b"]])}, r"'y' is of type char"),
        (
            {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[11], [1]])},
            r"'y' must lie in 1\.\.10.*found 1\.\.11",
        ),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[2.5], [1]])}, r"'y' must hold whole numbers"),
    ],
)
def test_files_not_shaped_like_svhn_are_named(tmp_path, variables, message):
    path = tmp_path / "train_32x32.mat"
    scipy.io.savemat(path, variables)
    with pytest.raises(UserError, match=message) as info:
        read_mat(path)
    assert "train_32x32.mat" in str(info.value)


def test_a_header_promising_too_many_images_is_refused_before_loading(svhn_dir, tmp_path):
    raw = (svhn_dir / "test_32x32.mat").read_bytes()
    dims = struct.pack("<4i", 32, 32, 3, 50)  # X's dimensions, as MATLAB v5 writes them
    assert raw.count(dims) == 1
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(raw.replace(dims, struct.pack("<4i", 32, 32, 3, 400_000_000)))
    with pytest.raises(UserError, match=rf"'X' holds 400,000,000 images \(at most {MAX_IMAGES:,}"):
        read_mat(path)


@pytest.mark.parametrize("content", [b"", b"not a matlab file at all" * 10, "truncated"])
def test_damaged_files_are_named(svhn_dir, tmp_path, content):
    if content == "truncated":
        content = (svhn_dir / "test_32x32.mat").read_bytes()[:5000]
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(content)
    with pytest.raises(
        UserError, match=r"SVHN file .*test_32x32.mat (is truncated or not a MATLAB v5 file|is not shaped)"
    ):
        read_mat(path)


def test_the_preset_is_the_paper_protocol_on_svhn(svhn_dir):
    cfg, paper = load_config(CONFIGS / "svhn.yaml"), load_config(CONFIGS / "paper.yaml")
    assert cfg.name == "svhn" and cfg.data.dataset == "svhn" and cfg.data.svhn_extra is False
    assert cfg.models == paper.models and cfg.zoo == paper.zoo and cfg.train == paper.train and cfg.seeds == paper.seeds
    assert [(c.a, c.b) for c in cfg.comparisons] == [(c.a, c.b) for c in paper.comparisons]
    assert not any("%" in c.claim for c in cfg.comparisons)
    data_cfg = cfg.data.model_copy(update={"dir": svhn_dir, "val_size": 20})
    assert load_study_data(data_cfg).class_names == CLASS_NAMES
