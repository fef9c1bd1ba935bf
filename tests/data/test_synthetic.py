"""``distillbench synth-data --format ...``: each format round-trips through its reader, marked as
generated; the counts and classes a format cannot hold are refused before anything is written."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from distillbench.cli import SYNTH_FORMAT_NAMES, main
from distillbench.config import DataConfig
from distillbench.data import load_study_data
from distillbench.data.synthetic import SYNTH_FORMATS, write_cifar100_like


def test_the_command_line_lists_every_format():
    assert SYNTH_FORMAT_NAMES == tuple(SYNTH_FORMATS)


@pytest.mark.parametrize(
    "data_format, classes, superclasses",
    [("cifar10", 10, None), ("cifar100", 15, 3), ("svhn", 10, None), ("imagefolder", 4, None)],
)
def test_each_format_round_trips_through_its_reader(tmp_path, capsys, data_format, classes, superclasses):
    out = tmp_path / data_format
    argv = ["synth-data", str(out), "--format", data_format, "--train", "60", "--test", "30", "--seed", "5"]
    argv += ["--classes", str(classes)] if data_format in ("cifar100", "imagefolder") else []
    assert main(argv) == 0
    printed = capsys.readouterr().out.replace("\n", " ")
    assert f"GENERATED images of {classes} classes" in printed and f"--data-dir {out}" in printed
    assert ("--set data.dataset=" in printed) == (data_format != "cifar10")

    data = load_study_data(DataConfig(dataset=data_format, dir=out, val_size=classes, download_root=tmp_path / "dl"))
    assert data.synthetic and "GENERATED" in data.source
    assert len(data.class_names) == classes and data.image_shape == (3, 32, 32)
    assert (len(data.train) + len(data.val), len(data.test)) == (60, 30)
    labels = np.concatenate([data.train.labels.numpy(), data.val.labels.numpy()])
    assert np.bincount(labels, minlength=classes).min() >= (1 if data_format == "cifar10" else 60 // classes)
    assert (None if data.superclasses is None else len(data.superclasses)) == superclasses


def test_cifar100_defaults_to_a_hundred_classes_in_twenty_superclasses(tmp_path, capsys):
    assert main(["synth-data", str(tmp_path / "c"), "--format", "cifar100", "--train", "300", "--test", "100"]) == 0
    data = load_study_data(DataConfig(dataset="cifar100", dir=tmp_path / "c", val_size=100))
    assert len(data.class_names) == 100 and len(data.superclasses) == 20
    assert np.bincount(data.test.labels.numpy()).tolist() == [1] * 100


def test_the_same_seed_writes_the_same_files(tmp_path):
    def digest(directory: Path) -> dict[str, str]:
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in directory.iterdir()}

    first = write_cifar100_like(tmp_path / "a", 40, 20, classes=10, seed=3)
    assert digest(first) == digest(write_cifar100_like(tmp_path / "b", 40, 20, classes=10, seed=3))
    assert digest(first) != digest(write_cifar100_like(tmp_path / "c", 40, 20, classes=10, seed=4))


@pytest.mark.parametrize(
    "options, message",
    [
        (["--format", "svhn", "--classes", "5"], "SVHN has exactly 10 classes; leave --classes out"),
        (["--format", "cifar10", "--classes", "100"], "CIFAR-10 has exactly 10 classes"),
        (["--format", "cifar100", "--classes", "1"], "--classes 1: give a number of classes from 2 to 1,000"),
        (["--format", "imagefolder", "--classes", "5000"], "--classes 5000: give a number of classes from 2 to 1,000"),
        (["--format", "cifar100", "--train", "150"], "--train 150: give a number of images from 200 to 10,000,000"),
        (["--format", "imagefolder", "--classes", "20", "--test", "19"], "--test 19: give a number of images from 20"),
    ],
)
def test_impossible_counts_are_refused_before_writing(tmp_path, capsys, options, message):
    assert main(["synth-data", str(tmp_path / "d"), *options]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()
