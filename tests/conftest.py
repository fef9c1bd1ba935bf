"""Shared fixtures: generated data in CIFAR-10's on-disk format and random backbone weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillbench.cli import main
from distillbench.data.synthetic import write_cifar10_like
from distillbench.models import BACKBONES
from distillbench.models.weights import save_random_weights

N_TRAIN, N_TEST, VAL_SIZE = 2000, 400, 400
SEEDS = [0, 1]  # of the shared paper_study fixture


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar10_like(
        tmp_path_factory.mktemp("data") / "cifar-10-batches-py", N_TRAIN, N_TEST, seed=1, separation=0.3
    )


@pytest.fixture(scope="session")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = save_random_weights(tmp_path_factory.mktemp("weights"), BACKBONES.values())
    return {path.stem: path for path in paths}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def study_args(cifar_dir: Path, weight_files: dict[str, Path], cache_dir: Path, out: Path, *sets: str) -> list[str]:
    """``distillbench run`` arguments for a quick study on the fixture."""
    args = ["run", "--data-dir", str(cifar_dir), "--out", str(out), "--device", "cpu"]
    for item in (
        f"weights.resnet50={weight_files['resnet50']}",
        f"weights.vgg16={weight_files['vgg16']}",
        "train.epochs=3",
        f"data.val_size={VAL_SIZE}",
        f"perf.cache_dir={cache_dir}",
        "seeds=[0]",
        "evaluation.latency_repeats=3",
        "evaluation.figures=false",  # half a second each: drawn by the tests that look at them
        "perf.workers=1",  # in-process, so that tests can patch the training; workers are tested on their own
        *sets,
    ):
        args += ["--set", item]
    return args


@pytest.fixture(scope="session")
def paper_study(tmp_path_factory, cifar_dir, weight_files, cache_dir) -> Path:
    """All five models of the paper's protocol with two seeds, run once through the CLI, on the
    default worker processes (perf.workers: auto)."""
    out = tmp_path_factory.mktemp("study") / "paper"
    args = study_args(cifar_dir, weight_files, cache_dir, out, "perf.workers=auto", "evaluation.figures=true")
    assert main([*args, "--seeds", str(len(SEEDS))]) == 0
    return out


# A tiny sweep: a small-CNN teacher and its KD student on a 2 x 2 grid over kd.temperature and
# kd.alpha with two seeds; fp32 and one torch thread, so that every executor does the same arithmetic.
TINY_SWEEP = """\
name: tiny
models: [small_cnn, kd_small]
zoo:
  small_cnn: {arch: small_cnn, lr: 0.003}
  kd_small: {arch: small_cnn, lr: 0.003, teachers: [small_cnn], title: KD from the small CNN}
seeds: [0, 1]
train: {epochs: 3, patience: null}
data: {train_limit: 1000, val_size: 200, test_limit: 200}
evaluation: {efficiency: false, kd_reference: kd_small}
comparisons: []
perf: {workers: 1, threads: 1, precision: fp32}
sweep:
  axes: {kd.temperature: [1, 4], kd.alpha: [0.2, 0.8]}
"""


def sweep_args(cifar_dir: Path, tmp: Path, out: Path, *sets: str) -> list[str]:
    """``distillbench sweep`` arguments for the tiny sweep on the fixture (its config written in ``tmp``)."""
    config = tmp / "tiny-sweep.yaml"
    config.write_text(TINY_SWEEP)
    args = ["sweep", "--config", str(config), "--data-dir", str(cifar_dir), "--out", str(out), "--device", "cpu"]
    for item in (f"perf.cache_dir={tmp / 'cache'}", *sets):
        args += ["--set", item]
    return args


@pytest.fixture(scope="session")
def local_sweep(tmp_path_factory, cifar_dir) -> Path:
    """The tiny sweep, run once on this machine (the local executor, in-process)."""
    tmp = tmp_path_factory.mktemp("sweep")
    out = tmp / "out"
    assert main(sweep_args(cifar_dir, tmp, out)) == 0
    return out
