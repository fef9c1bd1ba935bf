"""Feature methods' students through a whole study, on generated CIFAR-100-format data: they train
on images, alone even with ``perf.batched``, with their teacher's features computed on every batch
when batches are augmented and computed once and kept in memory when not (the same loss either way);
a method's learned parts train with the student and are saved beside it; and the config checks a
feature method needs (one teacher, staged architectures). ``stage_means`` is a stand-in registered
here: CE plus the squared difference of each stage's channel-mean map, student against teacher;
``fitnet``, ``at``, ``rkd`` (with a KD term) and ``reviewkd`` are the real methods (their losses are
checked against mdistiller in tests/training; CRD trains in tests/study/test_cifar100_kd_preset.py)."""

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
from distillbench.study.inputs import kept_teacher_mib
from distillbench.study.recipe import distill_problems, model_recipes
from distillbench.study.runner import Study
from distillbench.training.distill import METHODS, DistillMethod

ONLINE = "stage_means: teacher features are computed on every batch (augmented batches: each is new)"
CACHED = "stage_means: teacher features computed once and kept in memory"
RECIPE = "arch: resnet8, lr: 0.05, optimizer: sgd, momentum: 0.9, init: torch, input_norm: cifar100"
STUDY = f"""
data: {{dataset: cifar100, val_size: 0}}
train: {{epochs: 1, batch_size: 64, patience: null, augment: crop_flip}}
seeds: [0, 1]
models: [teacher, student_flip, student_plain, fitnet, at, rkd, reviewkd]
zoo:
  teacher: {{{RECIPE}}}
  student_flip: {{{RECIPE}, teachers: [teacher], distill: stage_means}}
  student_plain: {{{RECIPE}, teachers: [teacher], distill: stage_means, augment: none}}
  fitnet: {{{RECIPE}, teachers: [teacher], distill: fitnet, augment: none}}
  at: {{{RECIPE}, teachers: [teacher], distill: at, augment: none}}
  rkd: {{{RECIPE}, teachers: [teacher], distill: {{method: rkd, kd_weight: 1}}, augment: none}}
  reviewkd: {{{RECIPE}, teachers: [teacher], distill: reviewkd, augment: none}}
"""


class StageMeans(DistillMethod):
    """CE plus, per stage, the mean squared difference of the channel-mean maps (the test's method)."""

    method: Literal["stage_means"] = "stage_means"
    needs_features: ClassVar[bool] = True

    def feature_loss(
        self,
        student: Features,
        teachers: list[Features],
        labels: torch.Tensor,
        epoch: int,
        *,
        parts: torch.nn.Module | None = None,
        index: torch.Tensor | None = None,
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


def test_feature_students_train_alone_with_their_teachers_features(tmp_path, stage_means, capsys):
    data, out = tmp_path / "cifar-100-python", tmp_path / "study"
    write_cifar100_like(data, n_train=300, n_test=100, classes=10)
    # perf.threads=1: on a shared 2-core machine more threads made these tiny runs several times slower
    sets = ["perf.workers=1", "perf.threads=1", "perf.batched=true", f"perf.cache_dir={tmp_path / 'cache'}",
            "evaluation.efficiency=false", "evaluation.figures=false"]  # fmt: skip
    config = _config(tmp_path)
    args = ["run", "--config", str(config), "--data-dir", str(data), "--out", str(out), "--device", "cpu"]
    assert main([*args, *[a for s in sets for a in ("--set", s)]]) == 0
    log = capsys.readouterr().out
    assert log.count(f"[student_flip] {ONLINE}") == 2 and log.count(f"[student_plain] {CACHED}") == 2  # per run
    for key in ("student_flip", "student_plain", "fitnet", "at", "rkd", "reviewkd"):
        for seed in (0, 1):
            run = out / "runs" / key / f"seed-{seed}"
            record = json.loads((run / "run.json").read_text())
            assert record["trained_with"] is None  # alone, not batched
            assert record["recipe"]["teachers_online"] == (key == "student_flip")  # the others' were kept
            with open(run / "history.csv", newline="") as handle:
                (row,) = list(csv.DictReader(handle))
            assert math.isfinite(float(row["train_loss"])) and float(row["train_loss"]) > float(row["train_ce"])
            assert (run / "distill_parts.pt").exists() == (key in ("fitnet", "reviewkd"))
    assert not [line for line in log.splitlines() if line.startswith("[group] training") and "student" in line]

    cfg = load_config(config, [*sets, f"data.dir={data}"])
    study = Study(cfg, out, load_study_data(cfg.data))
    inputs, models = study.executor.inputs, study.executor.models

    # FitNets' regressor trained with the student (it moved from its initial weights), saved beside it
    # (not in the deployed model.pt, whose parameter count is the student's alone) and verified with it.
    run = out / "runs" / "fitnet" / "seed-1"
    record = json.loads((run / "run.json").read_text())
    saved = torch.load(run / "distill_parts.pt", weights_only=True)
    initial = inputs.feature_objective("fitnet", 1).parts.state_dict()
    assert saved.keys() == initial.keys() and not torch.equal(saved["conv.weight"], initial["conv.weight"])
    assert record["distill_parts"]["parameters"] == sum(
        v.numel() for k, v in saved.items() if "running" not in k and "num_batches" not in k
    )
    assert not any(
        k.startswith("distill") or k.startswith("conv.") for k in torch.load(run / "model.pt", weights_only=True)
    )
    assert record["params"] == sum(p.numel() for p in models.initial("fitnet", 1).parameters())
    assert study.executor.store.verify("fitnet", 1, checkpoint=True).record is not None
    (run / "distill_parts.pt").write_bytes(b"damaged")
    assert "distill_parts.pt does not match" in study.executor.store.verify("fitnet", 1, checkpoint=True).problem

    # The objective runs the trained teacher, in eval mode, on the student's very batch; kept in memory
    # (not augmented) or computed on every batch (perf.cache_teacher_logits off), the loss is the same.
    teacher = models.trained_model("teacher", 1)
    idx = torch.tensor([3, 0, 7, 299, 5, 5, 120, 1])
    batch, labels = study.data.train.images[idx], study.data.train.labels[idx]
    student = models.initial("student_plain", 1).forward_features(batch)
    with torch.no_grad():
        expected = StageMeans().feature_loss(student, [teacher.forward_features(batch)], labels, 1)
    assert not teacher.training
    kept = inputs.objective_for("student_plain", 1, trains_on_images=True)
    inputs.perf = inputs.perf.model_copy(update={"cache_teacher_logits": False})
    online = inputs.objective_for("student_plain", 1, trains_on_images=True)
    torch.testing.assert_close(online(idx, batch, labels, student, 1), expected, rtol=0, atol=0)
    torch.testing.assert_close(kept(idx, batch, labels, student, 1), expected, rtol=1e-5, atol=1e-6)
    inputs.perf = inputs.perf.model_copy(update={"cache_teacher_logits": True, "teacher_feature_memory_mb": 0})
    capsys.readouterr()
    inputs.objective_for("student_plain", 1, trains_on_images=True)
    assert "teacher features are computed on every batch (kept in memory they would take" in capsys.readouterr().out


def test_the_memory_estimate_counts_what_the_method_reads():
    g = torch.Generator().manual_seed(0)
    stages = [torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 8, 4, 4, generator=g)]  # 256 + 128 values
    preact = [torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 8, 4, 4, generator=g)]
    with_preact = Features(stages, torch.randn(2, 16, generator=g), torch.randn(2, 10, generator=g), preact)
    without = Features(stages, with_preact.embedding, with_preact.logits)
    mib = 4 * 1000 / 2**20  # float32, 1000 images
    assert kept_teacher_mib(with_preact, frozenset({"stages"}), 1000) == pytest.approx(384 * mib)
    assert kept_teacher_mib(with_preact, frozenset({"preactivation", "embedding"}), 1000) == pytest.approx(400 * mib)
    assert kept_teacher_mib(without, frozenset({"preactivation"}), 1000) == pytest.approx(384 * mib)  # its stages
    assert kept_teacher_mib(with_preact, DistillMethod.teacher_features, 1000) == pytest.approx(794 * mib)  # all


@pytest.fixture
def plugin_architectures():
    """Two plugin architectures for the test: ``plain_mlp`` registered without stages, ``staged_mlp``
    with them (nothing builds them: the config check reads the registry only)."""
    from distillbench.models import ARCHITECTURES, register_architecture

    register_architecture("plain_mlp", lambda *args: None)
    register_architecture("staged_mlp", lambda *args: None, stages=True)
    yield
    del ARCHITECTURES["plain_mlp"], ARCHITECTURES["staged_mlp"]


def test_a_feature_method_distils_one_teacher_of_a_staged_architecture(tmp_path, stage_means, plugin_architectures):
    from distillbench.models import staged_architectures

    # A plugin architecture registered without stages is refused; one registered with them, the small
    # CNN, the backbones and timm are taken.
    extra = f"""  mlp: {{arch: plain_mlp, lr: 0.001}}
  two_teachers: {{{RECIPE}, teachers: [teacher, student_flip], distill: stage_means}}
  from_mlp: {{{RECIPE}, teachers: [mlp], distill: stage_means}}
  mlp_student: {{arch: plain_mlp, lr: 0.001, teachers: [teacher], distill: stage_means}}
  kd_from_mlp: {{{RECIPE}, teachers: [mlp], distill: kd}}
  staged_student: {{arch: staged_mlp, lr: 0.001, teachers: [teacher], distill: stage_means}}
  cnn: {{arch: small_cnn, lr: 0.001}}
  cnn_student: {{arch: small_cnn, lr: 0.001, teachers: [cnn], distill: stage_means}}
  vgg_student: {{arch: vgg16, lr: 0.001, teachers: [teacher], distill: stage_means}}
  resnet_student: {{arch: resnet50, lr: 0.001, teachers: [teacher], distill: stage_means}}
  timm_student: {{arch: timm, timm_model: test_resnet, lr: 0.001, teachers: [teacher], distill: stage_means}}
"""
    problems = distill_problems(load_config(_config(tmp_path, extra)))
    staged = staged_architectures()
    assert staged[:4] == ["small_cnn", "resnet50", "vgg16", "timm"] and "staged_mlp" in staged
    assert "resnet8" in staged and "plain_mlp" not in staged
    what_to_do = (
        f"distils; use an architecture that does ({', '.join(staged)}), or register plain_mlp with "
        "register_architecture(name, builder, stages=True) once its Classifier declares them (a StageLayout)"
    )
    assert problems == [
        "zoo.two_teachers.teachers: stage_means is a feature method; feature methods distil one teacher, "
        "not 2 (teacher, student_flip)",
        "zoo.mlp.arch (teacher of from_mlp): plain_mlp does not declare its stages, which stage_means (a feature "
        "method) " + what_to_do,
        "zoo.mlp_student.arch: plain_mlp does not declare its stages, which stage_means (a feature method) "
        + what_to_do,
    ]


@pytest.mark.parametrize(
    ("method", "settings", "teacher", "expected"),
    [
        ("reviewkd", "", "mobilenetv2", "the student has 4 stages (stem included) and the teacher 5"),
        ("fitnet", ", hint_layer: 5", "resnet8", "hint_layer 5: the student has 4 stage outputs"),
    ],
)
def test_a_pair_its_method_cannot_join_stops_the_study_before_any_training(
    tmp_path, capsys, method, settings, teacher, expected
):
    data, out = tmp_path / "cifar-100-python", tmp_path / "study"
    write_cifar100_like(data, n_train=40, n_test=20, classes=4)
    config = tmp_path / "pair.yaml"
    config.write_text(f"""
data: {{dataset: cifar100, val_size: 0}}
train: {{epochs: 1, patience: null}}
models: [teacher, student]
zoo:
  teacher: {{arch: {teacher}, lr: 0.05}}
  student: {{arch: resnet8, lr: 0.05, teachers: [teacher], distill: {{method: {method}{settings}}}}}
""")
    args = ["run", "--config", str(config), "--data-dir", str(data), "--out", str(out), "--device", "cpu"]
    assert main([*args, "--set", f"perf.cache_dir={tmp_path / 'cache'}"]) == 2
    error = " ".join(capsys.readouterr().err.split())  # the paragraph, unwrapped
    assert f"zoo.student.distill: {method} cannot distil teacher ({teacher}) into student (resnet8): " in error
    assert expected in error and "Traceback" not in error
    assert not (out / "runs" / "teacher").exists()  # stopped before the teacher trained


def test_a_kd_term_enters_a_feature_students_identity_only_when_set(tmp_path, stage_means):
    extra = f"  fitnet_kd: {{{RECIPE}, teachers: [teacher], distill: {{method: fitnet, kd_weight: 1}}}}\n"
    recipes = model_recipes(load_config(_config(tmp_path, extra), ["models=[teacher, at, fitnet, fitnet_kd]"]))
    # AT's identity exactly as it was before feature methods had a KD term (and ce_weight in a base class):
    # its fingerprints, hence its finished runs, are kept.
    before = {"method": "at", "temperature": 4.0, "aggregation": "mean_logits", "p": 2, "feat_weight": 1000.0}
    assert recipes["at"].identity()["distill"] == {**before, "ce_weight": 1.0}
    assert "kd_weight" not in recipes["fitnet"].identity()["distill"]
    assert recipes["fitnet_kd"].identity()["distill"]["kd_weight"] == 1.0
    assert recipes["fitnet"].identity()["distill"]["hint_layer"] == 2


def test_an_architecture_that_claims_stages_it_cannot_compute_stops_the_study_in_preflight(tmp_path, capsys):
    from distillbench.models import ARCHITECTURES, register_architecture
    from distillbench.models.classifier import Classifier, Preprocess
    from distillbench.models.small_cnn import small_cnn_body

    def unstaged(spec, weights, image_shape, num_classes):  # a Classifier without a StageLayout
        return Classifier(torch.nn.Sequential(Preprocess()), small_cnn_body(image_shape, num_classes))

    register_architecture("claims_stages", unstaged, stages=True)
    try:
        data, out = tmp_path / "cifar-100-python", tmp_path / "study"
        write_cifar100_like(data, n_train=40, n_test=20, classes=4)
        config = tmp_path / "claims.yaml"
        config.write_text(
            "data: {dataset: cifar100, val_size: 10}\nmodels: [teacher, student]\nzoo:\n  teacher: {arch: claims_stages, lr: 0.01}\n"
            "  student: {arch: resnet8, lr: 0.05, teachers: [teacher], distill: at}\n"
        )
        args = ["run", "--config", str(config), "--data-dir", str(data), "--out", str(out), "--device", "cpu"]
        assert main([*args, "--set", f"perf.cache_dir={tmp_path / 'cache'}"]) == 2
    finally:
        del ARCHITECTURES["claims_stages"]
    error = " ".join(capsys.readouterr().err.split())
    assert "zoo.teacher.arch: claims_stages computes no stage outputs" in error and "Traceback" not in error
    assert not (out / "runs" / "teacher").exists()
