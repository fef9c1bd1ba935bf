"""CIFAR-100 from its python pickles: fine labels, superclasses derived and checked, hostile files
refused with the one-paragraph error, and the preset. The files are generated in the official layout
(never CIFAR-100)."""

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillbench.cli import main
from distillbench.config import DataConfig, load_config
from distillbench.data import load_study_data
from distillbench.data.cifar100 import read_cifar100_dir, read_split
from distillbench.data.synthetic import dumps_py2, write_cifar100_like
from distillbench.errors import UserError

CONFIGS = Path(__file__).parent.parent.parent / "configs"
CLASSES = 12  # three superclasses (ceil(12 / 5)): class i in superclass i mod 3


@pytest.fixture(scope="module")
def cifar100_dir(tmp_path_factory) -> Path:
    return write_cifar100_like(tmp_path_factory.mktemp("c100") / "cifar-100-python", 240, 60, classes=CLASSES, seed=2)


def _plain(path: Path) -> dict:
    """A file we wrote ourselves, read by the ordinary (unrestricted) unpickler: the reference."""
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="latin1")


def _copy(cifar100_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(cifar100_dir, tmp_path / "cifar-100-python"))


def _rewrite(directory: Path, name: str, **changes) -> None:
    content = {**_plain(directory / name), **changes}
    (directory / name).write_bytes(dumps_py2(content))


def test_reads_fine_labels_images_and_superclasses(cifar100_dir):
    arrays = read_cifar100_dir(cifar100_dir)
    train, test, meta = (_plain(cifar100_dir / name) for name in ("train", "test", "meta"))
    assert arrays.train_images.shape == (240, 3, 32, 32) and arrays.test_images.shape == (60, 3, 32, 32)
    np.testing.assert_array_equal(arrays.train_images.reshape(240, -1), train["data"])  # CHW rows, as stored
    assert arrays.train_labels.tolist() == train["fine_labels"] and arrays.test_labels.tolist() == test["fine_labels"]
    assert arrays.class_names == tuple(meta["fine_label_names"]) and len(arrays.class_names) == CLASSES
    assert np.bincount(arrays.test_labels).tolist() == [5] * CLASSES  # every class in both files
    names = meta["fine_label_names"]
    assert arrays.superclasses == {
        group: tuple(names[i] for i in range(CLASSES) if i % 3 == number)
        for number, group in enumerate(meta["coarse_label_names"])
    }
    assert arrays.synthetic and arrays.source.startswith("GENERATED data in CIFAR-100 format")


def test_a_hundred_classes_make_twenty_superclasses_of_five(tmp_path):
    arrays = read_cifar100_dir(write_cifar100_like(tmp_path / "c", 200, 100, seed=0))
    assert len(arrays.class_names) == 100 and len(arrays.superclasses) == 20
    assert {len(members) for members in arrays.superclasses.values()} == {5}


def test_the_study_data_carries_the_superclasses(cifar100_dir):
    data = load_study_data(DataConfig(dataset="cifar100", dir=cifar100_dir, val_size=24))
    assert (len(data.train), len(data.val), len(data.test)) == (216, 24, 60)
    assert data.superclasses == read_cifar100_dir(cifar100_dir).superclasses and data.synthetic


def test_real_files_are_not_called_generated(cifar100_dir, tmp_path):
    data = _copy(cifar100_dir, tmp_path)
    _rewrite(data, "train", batch_label="training batch 1 of 1")  # the official label
    _rewrite(data, "test", batch_label="testing batch 1 of 1")
    arrays = read_cifar100_dir(data)
    assert not arrays.synthetic and arrays.source == f"local directory {data}"


def test_a_missing_file_names_the_layout(cifar100_dir, tmp_path):
    data = _copy(cifar100_dir, tmp_path)
    (data / "meta").unlink()
    with pytest.raises(UserError, match=r"CIFAR-100 file .*meta is missing.*cifar-100-python directory holding train"):
        read_cifar100_dir(data)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (__import__("os").system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "train"
    path.write_bytes(pickle.dumps({"data": Exploit()}, protocol=2))
    with pytest.raises(UserError, match=r"Refusing to load .*train: it asks to call (posix|os)\.system.*CIFAR-100"):
        read_split(path, 100, 20)
    assert not (tmp_path / "pwned").exists()


def test_a_truncated_file_is_named(cifar100_dir, tmp_path):
    data = _copy(cifar100_dir, tmp_path)
    raw = (data / "test").read_bytes()
    (data / "test").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(UserError, match=r"CIFAR-100 file .*test is truncated"):
        read_cifar100_dir(data)


@pytest.mark.parametrize(
    "name, changes, message",
    [
        (
            "train",
            {"data": np.zeros((240, 1024), np.uint8)},
            r"train: 'data' must be a uint8 array of shape \(N, 3072\)",
        ),
        (
            "train",
            {"fine_labels": [CLASSES] * 240},
            rf"train: fine_labels must lie in 0\.\.{CLASSES - 1}, found 12\.\.12",
        ),
        ("test", {"coarse_labels": [0] * 59}, r"test: 'coarse_labels' must be 60 integers, one per image, got 59"),
        ("test", {"coarse_labels": [-1] * 60}, r"test: coarse_labels must lie in 0\.\.2"),
        ("train", {"coarse_labels": None}, r"train: 'coarse_labels' must be a list of integers"),
        ("meta", {"fine_label_names": ["a"] * CLASSES}, r"meta: 'fine_label_names' must list 1 to 1,000 distinct"),
        ("meta", {"coarse_label_names": "vehicles"}, r"meta: 'coarse_label_names' must list"),
    ],
)
def test_bad_contents_are_named(cifar100_dir, tmp_path, name, changes, message):
    data = _copy(cifar100_dir, tmp_path)
    _rewrite(data, name, **changes)
    with pytest.raises(UserError, match=message):
        read_cifar100_dir(data)


def test_a_class_in_two_superclasses_is_refused(cifar100_dir, tmp_path):
    data = _copy(cifar100_dir, tmp_path)
    train = _plain(data / "train")
    coarse = list(train["coarse_labels"])
    first = train["fine_labels"].index(4)  # class 4 is in superclass 1; one of its images now says 2
    coarse[first] = 2
    _rewrite(data, "train", coarse_labels=coarse)
    with pytest.raises(UserError, match=r"train: class 'class_04' is labelled with 2 different superclasses"):
        read_cifar100_dir(data)


def test_a_test_file_disagreeing_with_training_is_refused(cifar100_dir, tmp_path):
    data = _copy(cifar100_dir, tmp_path)
    test = _plain(data / "test")
    index = test["fine_labels"].index(0)
    coarse = list(test["coarse_labels"])
    coarse[index] = 1
    _rewrite(data, "test", coarse_labels=coarse)
    with pytest.raises(UserError, match=rf"its image {index} of class 'class_00' has superclass 'superclass_1'"):
        read_cifar100_dir(data)


def test_a_superclass_without_classes_is_refused(cifar100_dir, tmp_path):
    data = _copy(cifar100_dir, tmp_path)
    meta = _plain(data / "meta")
    _rewrite(data, "meta", coarse_label_names=[*meta["coarse_label_names"], "empty"])
    with pytest.raises(UserError, match=r"superclass 'empty' has no classes"):
        read_cifar100_dir(data)


_BLOB = dumps_py2({"fine_labels": [3, 1], "coarse_labels": [1, 1], "data": np.ones((2, 3072), np.uint8)})
_STRUCTURE = [i for i in range(len(_BLOB)) if i < 200 or i >= len(_BLOB) - 200]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offsets=st.lists(st.sampled_from(_STRUCTURE), min_size=1, max_size=3), values=st.binary(min_size=3, max_size=3))
def test_flipped_bytes_load_or_stop_with_the_error(tmp_path, offsets, values):
    data = bytearray(_BLOB)
    for offset, value in zip(offsets, values):
        data[offset] = value
    path = tmp_path / "train"
    path.write_bytes(bytes(data))
    try:
        images, fine, coarse, _ = read_split(path, 4, 2)
    except UserError as exc:
        assert "train" in str(exc)
        return
    assert images.dtype == np.uint8 and images.shape == (len(fine), 3, 32, 32) and len(coarse) == len(fine)
    assert ((0 <= fine) & (fine < 4)).all() and ((0 <= coarse) & (coarse < 2)).all()


def test_the_preset_is_the_paper_protocol_on_cifar100():
    cfg, paper = load_config(CONFIGS / "cifar100.yaml"), load_config(CONFIGS / "paper.yaml")
    assert cfg.name == "cifar100" and cfg.data.dataset == "cifar100"
    assert cfg.models == paper.models and cfg.zoo == paper.zoo and cfg.train == paper.train and cfg.seeds == paper.seeds
    assert cfg.data.model_copy(update={"dataset": "cifar10"}) == paper.data
    assert [(c.a, c.b) for c in cfg.comparisons] == [(c.a, c.b) for c in paper.comparisons]
    assert not any("%" in c.claim for c in cfg.comparisons)  # the paper's CIFAR-10 numbers are not claimed here


def test_the_preset_runs_at_a_tiny_size(cifar100_dir, tmp_path):
    out = tmp_path / "study"
    sets = ["models=[small_cnn]", "comparisons=[]", "seeds=[0]", "train.epochs=1", "data.val_size=24"]
    sets += ["evaluation.figures=false", "evaluation.efficiency=false", "evaluation.bootstrap_resamples=200"]
    sets += ["perf.workers=1", f"perf.cache_dir={tmp_path / 'cache'}"]
    args = ["run", "--config", str(CONFIGS / "cifar100.yaml"), "--data-dir", str(cifar100_dir), "--out", str(out)]
    assert main([*args, "--device", "cpu", *[part for item in sets for part in ("--set", item)]]) == 0
    record = json.loads((out / "runs" / "small_cnn" / "seed-0" / "run.json").read_text())
    assert record["synthetic_data"] is True
    assert record["superclasses"] == {k: list(v) for k, v in read_cifar100_dir(cifar100_dir).superclasses.items()}
    assert math.ceil(CLASSES / 5) == len(record["superclasses"])
