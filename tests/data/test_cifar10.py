import pickle
import pickletools
import shutil
from pathlib import Path

import numpy as np
import pytest

from distillbench.config import DataConfig
from distillbench.data import load_study_data
from distillbench.data.cifar10 import CLASS_NAMES, read_batch, read_cifar10_dir
from distillbench.data.synthetic import dumps_py2
from distillbench.errors import UserError


def test_fixture_is_written_as_python2_pickles(cifar_dir):
    raw = (cifar_dir / "data_batch_1").read_bytes()
    ops = {op.name for op, _, _ in pickletools.genops(raw)}
    assert {"BINSTRING", "SHORT_BINSTRING", "GLOBAL"} <= ops  # Python 2 str, not Python 3 bytes
    assert b"numpy.core.multiarray\n_reconstruct" in raw
    assert "BINUNICODE" not in ops


def test_reads_the_whole_directory(cifar_dir):
    arrays = read_cifar10_dir(cifar_dir)
    assert arrays.train_images.shape == (2000, 3, 32, 32) and arrays.train_images.dtype == np.uint8
    assert arrays.test_images.shape == (400, 3, 32, 32)
    assert arrays.class_names == CLASS_NAMES
    assert arrays.synthetic
    # Round trip: the first image of the batch equals the row the writer stored, in CHW order.
    with open(cifar_dir / "data_batch_1", "rb") as handle:
        plain = pickle.load(handle, encoding="latin1")
    np.testing.assert_array_equal(arrays.train_images[0].reshape(-1), plain["data"][0])
    assert list(arrays.train_labels[:50]) == plain["labels"][:50]


def _broken_copy(cifar_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dir, copy)
    return copy


def test_missing_file_is_named(cifar_dir, tmp_path):
    data = _broken_copy(cifar_dir, tmp_path)
    (data / "data_batch_3").unlink()
    with pytest.raises(UserError, match=r"data_batch_3 is missing.*--data-dir"):
        read_cifar10_dir(data)


def test_truncated_file_is_named(cifar_dir, tmp_path):
    data = _broken_copy(cifar_dir, tmp_path)
    raw = (data / "test_batch").read_bytes()
    (data / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match=r"test_batch is truncated"):
        read_cifar10_dir(data)


def test_pickle_that_runs_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (__import__("os").system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": Exploit()}, protocol=2))
    with pytest.raises(UserError, match=r"Refusing to load .*data_batch_1.*(posix|os)\.system"):
        read_batch(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "batch, message",
    [
        ({"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}, r"shape \(N, 3072\)"),
        ({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2]}, r"4 integers"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, r"labels must lie in 0\.\.9"),
        ({"labels": [0]}, r"no 'data' entry"),
    ],
)
def test_bad_batch_contents_are_named(tmp_path, batch, message):
    path = tmp_path / "data_batch_2"
    path.write_bytes(dumps_py2(batch))
    with pytest.raises(UserError, match=message) as info:
        read_batch(path)
    assert "data_batch_2" in str(info.value)


def test_validation_split_is_stratified_seeded_and_disjoint(cifar_dir):
    cfg = DataConfig(dir=cifar_dir, val_size=400, split_seed=3)
    first, again = load_study_data(cfg), load_study_data(cfg)
    assert len(first.train) == 1600 and len(first.val) == 400 and len(first.test) == 400
    assert first.fingerprint == again.fingerprint
    assert load_study_data(cfg.model_copy(update={"split_seed": 4})).fingerprint != first.fingerprint
    # Stratified: each class's share in val matches its share in the full training set within 1 image.
    full = np.bincount(read_cifar10_dir(cifar_dir).train_labels, minlength=10) / 2000
    val = np.bincount(first.val.labels.numpy(), minlength=10)
    assert np.all(np.abs(val - full * 400) <= 1)
    # Disjoint: no validation image is also a training image (the generator's noise makes all distinct).
    train_rows = {row.tobytes() for row in first.train.images.numpy()}
    assert not any(row.tobytes() in train_rows for row in first.val.images.numpy())


def test_download_failure_names_the_offline_options(monkeypatch, tmp_path):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(UserError, match=r"--data-dir.*weights: PATH"):
        load_study_data(DataConfig(download_root=tmp_path))
