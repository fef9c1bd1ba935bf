"""Runs on worker processes: the same predictions as in-process, teachers before students, a failing
run stops the study cleanly, and a study killed while two workers train resumes where it stopped."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from distillbench.cli import main
from distillbench.config import PerfConfig
from distillbench.study.workers import _PrefixedLines, resolve_workers
from distillbench.training.runtime import Runtime, cpu_count, threads_per_run
from tests.conftest import study_args

# fp32 and one torch thread per run in both paths: the same arithmetic, so the same numbers.
SMALL = ["models=[small_cnn,kd_resnet50]", "seeds=[0,1]", "train.epochs=2", "data.train_limit=600",
         "data.val_size=100", "data.test_limit=200", "perf.precision=fp32", "evaluation.efficiency=false"]  # fmt: skip
RUNS = [(key, seed) for seed in (0, 1) for key in ("small_cnn", "resnet50", "kd_resnet50")]


def _logits(out, key, seed):
    with np.load(out / "runs" / key / f"seed-{seed}" / "predictions.npz") as saved:
        return saved["logits"]


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, cifar_dir, weight_files, cache_dir):
    out = tmp_path_factory.mktemp("serial") / "study"
    args = study_args(cifar_dir, weight_files, cache_dir, out, *SMALL, "perf.threads=1")
    assert main(args) == 0
    return out


def test_workers_give_the_in_process_predictions(in_process, tmp_path, cifar_dir, weight_files, cache_dir, capfd):
    out = tmp_path / "study"
    args = study_args(cifar_dir, weight_files, cache_dir, out, *SMALL, "perf.workers=2", "perf.threads=2")
    assert main(args) == 0
    log = capfd.readouterr().out  # workers write to the process's file descriptors
    assert "Training on 2 worker processes, 1 torch thread(s) each" in log
    assert "kd_resnet50 seed 1 | [kd_resnet50] epoch  2/2" in log  # each worker's lines name its run
    for key, seed in RUNS:  # one thread per run in both: the same arithmetic, bit for bit
        np.testing.assert_array_equal(_logits(out, key, seed), _logits(in_process, key, seed))
    for seed in (0, 1):  # a student starts only once its teacher is saved
        teacher = (out / "runs" / "resnet50" / f"seed-{seed}" / "predictions.npz").stat().st_mtime
        student = (out / "runs" / "kd_resnet50" / f"seed-{seed}" / "model.pt").stat().st_mtime
        assert teacher <= student


def test_a_failing_run_stops_the_study_and_keeps_finished_runs(tmp_path, cifar_dir, weight_files, cache_dir, capsys):
    out = tmp_path / "study"
    sets = ["models=[small_cnn,resnet50,vgg16]", "zoo.vgg16.trainable_layers=999", "train.epochs=1",
            "data.train_limit=600", "data.val_size=100", "data.test_limit=200", "evaluation.efficiency=false",
            "perf.workers=2"]  # fmt: skip
    assert main(study_args(cifar_dir, weight_files, cache_dir, out, *sets)) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "vgg16 (seed 0) failed: vgg16: trainable_layers=999" in err and "Traceback" not in err
    assert "run again to resume" in err
    finished = [
        key for key in ("small_cnn", "resnet50") if (out / "runs" / key / "seed-0" / "predictions.npz").exists()
    ]
    assert finished  # vgg16 started when one of the two had finished
    assert not (out / "runs" / "vgg16" / "seed-0" / "run.json").exists()


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_a_study_stopped_while_two_workers_train_resumes(
    in_process, tmp_path, cifar_dir, weight_files, cache_dir, stop
):
    out = tmp_path / "study"
    args = study_args(cifar_dir, weight_files, cache_dir, out, *SMALL, "perf.workers=2", "perf.threads=2")
    args += ["--set", "train.epochs=2"]
    command = [sys.executable, "-m", "distillbench", *args]
    study = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    seen = []
    for line in study.stdout:  # kill it once one run is saved and two others are training
        seen.append(line)
        if "kd_resnet50 seed 0 | [kd_resnet50] epoch  1/2" in line:
            break
    os.killpg(study.pid, stop)  # the whole process group, as a terminal's Ctrl-C does
    rest = study.communicate(timeout=60)[0]
    if stop == signal.SIGINT:  # a clean stop: the workers are gone and the user is told how to resume
        assert study.returncode == 130 and "run the same command again to resume" in rest
        assert "Traceback" not in rest, rest
    time.sleep(0.5)
    assert any("resnet50 seed 0 | [resnet50] seed 0 done" in line for line in seen), "".join(seen)
    saved = {
        (key, seed): (out / "runs" / key / f"seed-{seed}" / "model.pt").stat().st_mtime_ns
        for key, seed in RUNS
        if (out / "runs" / key / f"seed-{seed}" / "predictions.npz").exists()
    }
    assert ("resnet50", 0) in saved and ("kd_resnet50", 0) not in saved
    assert main(args) == 0
    for key_seed, mtime in saved.items():  # finished runs were kept, not retrained
        assert (out / "runs" / key_seed[0] / f"seed-{key_seed[1]}" / "model.pt").stat().st_mtime_ns == mtime
    for key, seed in RUNS:
        np.testing.assert_array_equal(_logits(out, key, seed), _logits(in_process, key, seed))


def test_worker_count_and_threads_per_run():
    """Fewer runs left start fewer workers, but every run's thread count stays the study's."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    three = PerfConfig(workers=3, threads=6)
    assert resolve_workers(three, cpu, runs=10) == 3 and resolve_workers(three, cpu, runs=2) == 2
    assert threads_per_run(three, cpu) == 2  # however many runs are left
    assert resolve_workers(PerfConfig(), cuda, runs=10) == 1
    assert 1 <= resolve_workers(PerfConfig(), cpu, runs=10) <= 8
    auto = PerfConfig()
    assert threads_per_run(auto, cpu) == max(1, cpu_count() // min(cpu_count(), 8))
    assert Runtime.resolve(auto, "cpu").threads == threads_per_run(auto, cpu)


def test_prefixed_lines_prefix_whole_lines():
    import io

    target = io.StringIO()
    stream = _PrefixedLines(target, "m seed 0 | ")
    stream.write("a\nb")
    stream.write("c\nprogress 1\rprogress 2\n")
    assert target.getvalue() == "m seed 0 | a\nm seed 0 | bc\nm seed 0 | progress 2\n" and not stream.isatty()


@pytest.mark.parametrize("workers", [1, 2])
def test_batched_groups_give_the_in_process_predictions(
    in_process, tmp_path, cifar_dir, weight_files, cache_dir, workers, capfd
):
    out = tmp_path / "study"
    sets = [*SMALL, "perf.batched=true", f"perf.workers={workers}", f"perf.threads={workers}"]
    assert main(study_args(cifar_dir, weight_files, cache_dir, out, *sets)) == 0
    log = capfd.readouterr().out
    # Every seed's small CNN in one group, every seed's ResNet50 head in another, then the students.
    assert "training 2 runs as one batched model: small_cnn seed 0, small_cnn seed 1" in log
    assert "training 2 runs as one batched model: resnet50 seed 0, resnet50 seed 1" in log
    assert "training 2 runs as one batched model: kd_resnet50 seed 0, kd_resnet50 seed 1" in log
    for key, seed in RUNS:
        np.testing.assert_allclose(_logits(out, key, seed), _logits(in_process, key, seed), atol=1e-4, rtol=0)
    record = __import__("json").loads((out / "runs" / "small_cnn" / "seed-1" / "run.json").read_text())
    assert record["trained_with"] == ["small_cnn seed 0", "small_cnn seed 1"]


@pytest.mark.parametrize("delay", [0.0, 0.5], ids=["as-workers-start", "while-they-import"])
def test_ctrl_c_while_workers_start_is_one_line(tmp_path, cifar_dir, weight_files, cache_dir, delay):
    """A terminal's Ctrl-C reaches the whole process group: the workers ignore it (they used to print
    tracebacks from the middle of importing torch) and the study stops them, with one line and exit 130.
    (Ctrl-C during training, and the resume after it, is the test above.)"""
    args = study_args(cifar_dir, weight_files, cache_dir, tmp_path / "study", *SMALL, "perf.workers=2")
    study = subprocess.Popen(
        [sys.executable, "-m", "distillbench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    for line in study.stdout:
        if line.startswith("Training on 2 worker processes"):
            break
    time.sleep(delay)
    os.killpg(study.pid, signal.SIGINT)
    out, err = study.communicate(timeout=60)
    assert study.returncode == 130, (out, err)
    assert err.strip() == "interrupted: finished models are saved; run the same command again to resume.", err
    assert "Traceback" not in out
