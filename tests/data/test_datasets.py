"""The dataset seam: a registered reader's data (any channels, size and classes) runs a whole study,
and nothing downstream assumes CIFAR-10's 3x32x32 images or 10 classes."""

import json

import numpy as np
import pytest

from distillbench.cli import main
from distillbench.config import DataConfig
from distillbench.data import DATASETS, DatasetArrays, load_study_data

CLASSES = ("zero", "one", "two", "three")


def _grey_digits(cfg: DataConfig) -> DatasetArrays:
    """4 classes of 1x20x24 images, each class a brighter band: learnable, and not CIFAR-shaped."""
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % len(CLASSES)
        images = rng.integers(0, 60, (n, 1, 20, 24), dtype=np.uint8)
        for index, label in enumerate(labels):
            images[index, 0, 5 * label : 5 * label + 5] += 150
        return images, labels.astype(np.int64)

    (train_x, train_y), (test_x, test_y) = split(400), split(80)
    return DatasetArrays(train_x, train_y, test_x, test_y, CLASSES, "generated grey bands", synthetic=True)


@pytest.fixture
def grey_dataset(monkeypatch):
    monkeypatch.setitem(DATASETS, "grey", _grey_digits)


def test_a_registered_dataset_is_read_and_split(grey_dataset):
    data = load_study_data(DataConfig(dataset="grey", val_size=40))
    assert data.image_shape == (1, 20, 24) and data.class_names == CLASSES
    assert (len(data.train), len(data.val), len(data.test)) == (360, 40, 80)
    assert np.bincount(data.val.labels.numpy()).tolist() == [10, 10, 10, 10]  # stratified


def test_val_size_0_keeps_every_training_image_in_train(grey_dataset):
    """The CIFAR KD benchmark's split: no validation split at all, train is the whole training set
    (train_limit still subsets it), and the fingerprint tells it from a split with validation."""
    data = load_study_data(DataConfig(dataset="grey", val_size=0))
    arrays = _grey_digits(DataConfig(dataset="grey"))
    assert data.val is None and list(data.splits) == ["train", "test"]
    assert (len(data.train), len(data.test)) == (400, 80)
    rows = sorted(image.tobytes() + bytes([label]) for image, label in zip(arrays.train_images, arrays.train_labels))
    kept = zip(data.train.images.numpy(), data.train.labels.numpy())
    assert sorted(image.tobytes() + bytes([label]) for image, label in kept) == rows
    limited = load_study_data(DataConfig(dataset="grey", val_size=0, train_limit=100))
    assert limited.val is None and np.bincount(limited.train.labels.numpy()).tolist() == [25] * 4
    assert data.fingerprint != load_study_data(DataConfig(dataset="grey", val_size=40)).fingerprint


def test_a_study_on_it_has_no_cifar_constants(grey_dataset, tmp_path, capsys):
    out = tmp_path / "grey"
    sets = ["data.dataset=grey", "data.val_size=40", "models=[small_cnn]", "comparisons=[]", "seeds=[0]",
            "train.epochs=3", "evaluation.latency_repeats=2", "perf.workers=1", f"perf.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    assert main(["run", "--out", str(out), "--device", "cpu", *[a for s in sets for a in ("--set", s)]]) == 0
    results = json.loads((out / "results.json").read_text())
    entry = results["models"]["small_cnn"]
    assert results["study"]["class_names"] == list(CLASSES)
    assert np.asarray(entry["confusion_matrix"]).shape == (4, 4)
    assert entry["efficiency"]["image_shape"] == [1, 20, 24]
    assert entry["efficiency"]["macs"] == (  # conv 1->32 on 18x22, conv 32->64 on 7x9, dense 64*3*4->256->4
        32 * 18 * 22 * 9 + 64 * 7 * 9 * 32 * 9 + 64 * 3 * 4 * 256 + 256 * 4
    )
    assert entry["test_accuracy"] > 0.5  # the bands are easy: chance is 0.25
    report = (out / "report.md").read_text()
    assert "per 20x24 image" in report and "32x32" not in report and "CIFAR" not in report


def test_unknown_dataset_is_named(capsys):
    assert main(["run", "--set", "data.dataset=imagenet21k"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "data.dataset: unknown dataset 'imagenet21k'; known: cifar10" in err
