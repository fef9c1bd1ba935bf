"""A feature method's student through a whole study, on generated CIFAR-100-format data: it trains
on images with its teacher's features computed on every batch (augmented or not, never cached),
alone even with ``perf.batched``; and the config checks a feature method needs (one teacher, staged
architectures). The method is a stand-in registered here: CE plus the squared difference of each
stage's channel-mean map, student against teacher."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import ClassVar, Literal

import pytest
import torch
import torch.nn.functional as F

from distillbench.cli import main
from distillbench.config import load_config
from distillbench.data import load_study_data
from distillbench.data.synthetic import write_cifar100_like
from distillbench.models.classifier import Features
from distillbench.study.recipe import distill_problems
from distillbench.study.runner import Study
from distillbench.training.distill import METHODS, DistillMethod

FEATURES_LINE = "stage_means: teacher features are computed on every batch (not cached)"
RECIPE = "arch: resnet8, lr: 0.05, optimizer: sgd, momentum: 0.9, init: torch, input_norm: cifar100"
STUDY = f"""
data: {{dataset: cifar100, val_size: 0}}
train: {{epochs: 1, batch_size: 64, patience: null, augment: crop_flip}}
seeds: [0, 1]
models: [teacher, student_flip, student_plain]
zoo:
  teacher: {{{RECIPE}}}
  student_flip: {{{RECIPE}, teachers: [teacher], distill: stage_means}}
  student_plain: {{{RECIPE}, teachers: [teacher], distill: stage_means, augment: none}}
"""


class StageMeans(DistillMethod):
    """CE plus, per stage, the mean squared difference of the channel-mean maps (the test's method)."""

    method: Literal["stage_means"] = "stage_means"
    needs_features: ClassVar[bool] = True

    def feature_loss(
        self, student: Features, teachers: list[Features], labels: torch.Tensor, epoch: int
    ) -> torch.Tensor:
        (teacher,) = teachers
        assert student.logits.requires_grad and not any(t.requires_grad for t in teacher.stages)
        hint = sum(F.mse_loss(s.mean(1), t.mean(1)) for s, t in zip(student.stages, teacher.stages))
        return F.cross_entropy(student.logits, labels) + hint


@pytest.fixture
def stage_means(monkeypatch):
    monkeypatch.setitem(METHODS, "stage_means", StageMeans)


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "features.yaml"
    path.write_text(STUDY + extra)
    return path


def test_a_feature_student_trains_alone_with_its_teacher_online(tmp_path, stage_means, capsys):
    data, out = tmp_path / "cifar-100-python", tmp_path / "study"
    write_cifar100_like(data, n_train=300, n_test=100, classes=10)
    # perf.threads=1: on a shared 2-core machine more threads made these tiny runs several times slower
    sets = ["perf.workers=1", "perf.threads=1", "perf.batched=true", f"perf.cache_dir={tmp_path / 'cache'}",
            "evaluation.efficiency=false", "evaluation.figures=false"]  # fmt: skip
    config = _config(tmp_path)
    args = ["run", "--config", str(config), "--data-dir", str(data), "--out", str(out), "--device", "cpu"]
    assert main([*args, *[a for s in sets for a in ("--set", s)]]) == 0
    log = capsys.readouterr().out
    for key in ("student_flip", "student_plain"):
        assert log.count(f"[{key}] {FEATURES_LINE}") == 2  # once per run, augmented or not
        for seed in (0, 1):
            run = out / "runs" / key / f"seed-{seed}"
            assert json.loads((run / "run.json").read_text())["trained_with"] is None  # alone, not batched
            with open(run / "history.csv", newline="") as handle:
                (row,) = list(csv.DictReader(handle))
            assert math.isfinite(float(row["train_loss"])) and float(row["train_loss"]) > float(row["train_ce"])
    assert not [line for line in log.splitlines() if line.startswith("[group] training") and "student" in line]

    # The objective runs the trained teacher, in eval mode, on the student's very batch.
    cfg = load_config(config, [*sets, f"data.dir={data}"])
    study = Study(cfg, out, load_study_data(cfg.data))
    objective = study.executor.inputs.objective_for("student_plain", 1, trains_on_images=True)
    teacher = study.executor.models.trained_model("teacher", 1)
    batch, labels = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (8,))
    student = study.executor.models.initial("student_plain", 1).forward_features(batch)
    with torch.no_grad():
        expected = StageMeans().feature_loss(student, [teacher.forward_features(batch)], labels, 1)
    assert not teacher.training
    torch.testing.assert_close(objective(torch.arange(8), batch, labels, student, 1), expected, rtol=0, atol=0)


def test_a_feature_method_distils_one_teacher_of_a_staged_architecture(tmp_path, stage_means):
    extra = f"""  cnn: {{arch: small_cnn, lr: 0.001}}
  two_teachers: {{{RECIPE}, teachers: [teacher, student_flip], distill: stage_means}}
  from_cnn: {{{RECIPE}, teachers: [cnn], distill: stage_means}}
  cnn_student: {{arch: small_cnn, lr: 0.001, teachers: [teacher], distill: stage_means}}
  kd_from_cnn: {{{RECIPE}, teachers: [cnn], distill: kd}}
"""
    problems = distill_problems(load_config(_config(tmp_path, extra)))
    assert problems == [
        "zoo.two_teachers.teachers: stage_means is a feature method; feature methods distil one teacher, "
        "not 2 (teacher, student_flip)",
        "zoo.cnn.arch (teacher of from_cnn): small_cnn does not declare its stages, which stage_means (a feature "
        "method) distils; the CIFAR KD zoo's architectures do: " + ", ".join(_zoo()),
        "zoo.cnn_student.arch: small_cnn does not declare its stages, which stage_means (a feature method) "
        "distils; the CIFAR KD zoo's architectures do: " + ", ".join(_zoo()),
    ]


def _zoo() -> list[str]:
    from distillbench.models.zoo import ARCHITECTURES_OF_THE_ZOO

    return list(ARCHITECTURES_OF_THE_ZOO)
