"""Released teachers (issue 21): ``weights.<model key>: PATH`` loads that whole model's checkpoint,
which the study evaluates and does not train, and a student distils it."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from distillbench.cli import main
from distillbench.config import ModelDef, PerfConfig, load_config
from distillbench.data import load_study_data
from distillbench.errors import UserError
from distillbench.models import build_model
from distillbench.models.weights import load_model_checkpoint, read_model_checkpoint
from distillbench.study.plan import Planner
from distillbench.study.recipe import model_recipes
from distillbench.study.resolve import check_names
from distillbench.training.loop import predict
from distillbench.training.runtime import Runtime

CONFIG = """\
name: released
models: [teacher, student]
zoo:
  teacher: {arch: small_cnn, lr: 0.001, title: Released small CNN}
  student: {arch: small_cnn, lr: 0.003, teachers: [teacher]}
weights: {teacher: TEACHER}
seeds: [0, 1]
train: {epochs: 2, patience: null}
data: {train_limit: 300, val_size: 60, test_limit: 100}
evaluation: {efficiency: false, figures: false, kd_reference: student, latency_repeats: 3}
comparisons: []
perf: {workers: 1, threads: 1, precision: fp32, batched: true}
"""
IMAGE_SHAPE = (3, 32, 32)


def _small_cnn(seed: int):
    torch.manual_seed(seed)
    return build_model(ModelDef(arch="small_cnn", lr=1e-3), None, IMAGE_SHAPE, 10)


def _benchmark_checkpoint(path: Path, state: dict) -> Path:
    """The CIFAR KD benchmark's format: the state_dict under 'model', beside plain training values."""
    optimizer = {"state": {}, "param_groups": [{"lr": 0.05, "momentum": 0.9, "params": [0, 1]}]}
    torch.save({"model": state, "epoch": 240, "optimizer": optimizer, "accuracy": torch.tensor(71.5)}, path)
    return path


def _config(tmp_path: Path, teacher: Path, cache: Path) -> Path:
    path = tmp_path / "released.yaml"
    path.write_text(CONFIG.replace("TEACHER", str(teacher)))
    return path


@pytest.fixture
def released_study(tmp_path, cifar_dir, cache_dir, capsys):
    """A teacher loaded from a benchmark-format checkpoint and a student distilling it, two seeds,
    batched (the students train as one group; the teacher's runs are never grouped)."""
    teacher = _small_cnn(seed=7)
    checkpoint = _benchmark_checkpoint(tmp_path / "teacher.pth", teacher.state_dict())
    config = _config(tmp_path, checkpoint, cache_dir)
    out = tmp_path / "out"
    args = ["run", "--config", str(config), "--data-dir", str(cifar_dir), "--out", str(out), "--device", "cpu"]
    assert main([*args, "--set", f"perf.cache_dir={cache_dir}"]) == 0
    assert "[teacher] seed 0 evaluated (loaded, not trained): test accuracy" in capsys.readouterr().out
    return out, teacher, checkpoint, config


def test_a_released_teacher_is_evaluated_not_trained_and_distilled(released_study, cifar_dir):
    out, teacher, checkpoint, config = released_study
    cfg = load_config(config, [f"data.dir={cifar_dir}"])
    data = load_study_data(cfg.data)
    direct = predict(teacher.eval(), data.test.images, Runtime.resolve(PerfConfig(precision="fp32"), "cpu"))
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for seed in (0, 1):
        run = out / "runs" / "teacher" / f"seed-{seed}"
        with np.load(run / "predictions.npz") as saved:
            np.testing.assert_allclose(saved["logits"], direct.numpy(), rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(saved["y_pred"], direct.argmax(1).numpy())
        record = json.loads((run / "run.json").read_text())
        assert record["weights"] == f"loaded from {checkpoint} (sha256 {digest}), not trained"
        assert record["loaded_from"] == {"path": str(checkpoint), "sha256": digest}
        assert record["epochs_trained"] == 0 and record["recipe"]["loaded"] is True
        assert record["selected"] == "released" and 0 <= record["val_accuracy"] <= 1
        assert (run / "history.csv").read_text().strip().count("\n") == 0  # a header at most: no epoch
        state = torch.load(run / "model.pt", weights_only=True)
        assert all(torch.equal(state[k], v) for k, v in teacher.state_dict().items())
        student = json.loads((out / "runs" / "student" / f"seed-{seed}" / "run.json").read_text())
        assert student["epochs_trained"] == 2 and student["trained_with"]  # the students trained as a group
        assert student["teacher_checkpoints"]["teacher"] == record["checkpoint_sha256"]
    results = json.loads((out / "results.json").read_text())
    assert results["models"]["teacher"]["test_accuracy"] == pytest.approx(
        float((direct.argmax(1) == data.test.labels).float().mean())
    )


def test_the_fingerprint_follows_the_checkpoints_content_not_training_settings(tmp_path, cifar_dir):
    checkpoint = _benchmark_checkpoint(tmp_path / "teacher.pth", _small_cnn(seed=7).state_dict())
    config = _config(tmp_path, checkpoint, tmp_path / "cache")
    cfg = check_names(load_config(config, [f"data.dir={cifar_dir}"]))
    runtime = Runtime.resolve(cfg.perf, "cpu")

    def fingerprints(cfg):
        planner = Planner(cfg, "data", runtime, model_recipes(cfg))
        return planner.fingerprint("teacher", 0), planner.fingerprint("student", 0)

    teacher, student = fingerprints(cfg)
    # Training settings do not change what a loaded model predicts: neither it nor its students change.
    assert fingerprints(cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": 7})}))[0] == teacher
    # Other weights at the same path (a new file: a rewrite in place is caught by its mtime alone).
    _benchmark_checkpoint(tmp_path / "other.pth", _small_cnn(seed=8).state_dict()).replace(checkpoint)
    retrained_teacher, retrained_student = fingerprints(cfg)
    assert retrained_teacher != teacher and retrained_student != student


def _zoo_net(classifier):
    return classifier.body[0]


def test_the_benchmarks_checkpoints_load_into_zoo_architectures(tmp_path):
    spec = ModelDef(arch="resnet8", lr=0.05, input_norm="cifar100")
    torch.manual_seed(3)
    released = build_model(spec, None, IMAGE_SHAPE, 100)
    reference = {k: v.clone() for k, v in _zoo_net(released).state_dict().items()}
    for state, name in (
        (reference, "repdistiller.pth"),  # the reference network's names, under 'model'
        ({f"module.{k}": v for k, v in reference.items()}, "dataparallel.pth"),  # saved through DataParallel
        (released.state_dict(), "model.pt"),  # a distillbench checkpoint of the same zoo entry
    ):
        path = _benchmark_checkpoint(tmp_path / name, state)
        model = build_model(spec, None, IMAGE_SHAPE, 100)
        digest = load_model_checkpoint(model, "weights.teacher", path)
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
        assert all(torch.equal(v, reference[k]) for k, v in _zoo_net(model).state_dict().items()), name


def _one_paragraph(message: str) -> str:
    assert "\n" not in message
    return message


def test_a_checkpoint_that_does_not_load_stops_with_one_paragraph(tmp_path):
    model = _small_cnn(seed=0)
    with pytest.raises(UserError, match=r"weights\.teacher: .*missing\.pth is not a file") as missing:
        load_model_checkpoint(model, "weights.teacher", tmp_path / "missing.pth")
    torch.save({"epoch": 3, "best_acc": 0.5}, tmp_path / "no_state.pth")
    with pytest.raises(UserError, match=r"holds a dict of epoch, best_acc, not a state_dict") as not_a_state:
        read_model_checkpoint("weights.teacher", tmp_path / "no_state.pth")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled_module.pth")  # code, which weights_only refuses
    with pytest.raises(UserError, match=r"could not be loaded as a tensor-only checkpoint") as pickled:
        read_model_checkpoint("weights.teacher", tmp_path / "pickled_module.pth")
    state = model.state_dict()
    del state["body.0.weight"]
    state["body.12.weight"] = torch.zeros(3, 256)  # another number of classes
    state["extra.weight"] = torch.zeros(1)
    _benchmark_checkpoint(tmp_path / "wrong.pth", state)
    with pytest.raises(
        UserError, match=r"1 missing \(body\.0\.weight\); 1 unexpected \(extra\.weight\); 1 wrong shape"
    ) as wrong:
        load_model_checkpoint(_small_cnn(seed=0), "weights.teacher", tmp_path / "wrong.pth")
    torch.manual_seed(0)
    zoo = build_model(ModelDef(arch="resnet8", lr=0.05), None, IMAGE_SHAPE, 10)
    _benchmark_checkpoint(
        tmp_path / "resnet14.pth",
        build_model(ModelDef(arch="resnet14", lr=0.05), None, IMAGE_SHAPE, 10).body[0].state_dict(),
    )
    with pytest.raises(UserError, match=r"weights\.teacher: .*resnet14\.pth: .*does not fit resnet8") as zoo_error:
        load_model_checkpoint(zoo, "weights.teacher", tmp_path / "resnet14.pth")
    for error in (missing, not_a_state, pickled, wrong, zoo_error):
        _one_paragraph(str(error.value))


@pytest.mark.parametrize(
    "sets, message",
    [
        (["weights.teacher=imagenet"], r"weights\.teacher: 'imagenet', but model 'teacher' is a small_cnn, whose entry is the PATH"),
        (["weights.teachr=/x.pth"], r"weights\.teachr: unknown pretrained backbone or model key 'teachr'; .*\(did you mean 'teacher'\?\)"),
        (["zoo.teacher.teachers=[small_cnn]"], r"zoo\.teacher\.teachers: model 'teacher' is loaded from weights\.teacher, not trained"),
        (["zoo.student.input_norm=pretrained"], r"zoo\.student\.input_norm: pretrained .* applies to arch timm only"),
    ],
)  # fmt: skip
def test_weights_entries_are_checked_against_the_zoo(tmp_path, sets, message):
    config = _config(tmp_path, tmp_path / "teacher.pth", tmp_path / "cache")
    with pytest.raises(UserError, match=message) as error:
        check_names(load_config(config, sets))
    _one_paragraph(str(error.value))


def test_a_backbones_entry_stays_the_architectures_and_a_model_key_takes_precedence(tmp_path):
    """weights.resnet50 names the architecture even though resnet50 is also a model key; another key
    of arch resnet50 with its own entry is loaded whole and needs no architecture entry."""
    config = _config(tmp_path, tmp_path / "teacher.pth", tmp_path / "cache")
    sets = [
        "weights.resnet50=none",
        "zoo.r50={arch: resnet50, lr: 0.1}",
        "weights.r50=/x/r50.pt",
        "models=[resnet50, r50]",
    ]
    recipes = model_recipes(check_names(load_config(config, sets)))
    assert not recipes["resnet50"].loaded and recipes["resnet50"].weights == "none"
    assert recipes["r50"].loaded and recipes["r50"].weights is None and recipes["r50"].build_weights == "none"


def test_the_preflight_check_reads_every_released_checkpoint(tmp_path, cifar_dir):
    """``StudyModels.check_weights``: a checkpoint that is missing or does not fit stops the study
    before anything trains (a loaded teacher's run would otherwise fail only when it starts)."""
    from distillbench.study.models import StudyModels

    checkpoint = _benchmark_checkpoint(tmp_path / "teacher.pth", _small_cnn(seed=7).state_dict())
    cfg = check_names(load_config(_config(tmp_path, checkpoint, tmp_path / "cache"), []))
    runtime = Runtime.resolve(cfg.perf, "cpu")

    def check(cfg):
        StudyModels(model_recipes(cfg), runtime, None, IMAGE_SHAPE, 10).check_weights()

    check(cfg)
    with pytest.raises(UserError, match=r"weights\.teacher: .*gone\.pth is not a file"):
        check(cfg.model_copy(update={"weights": {**cfg.weights, "teacher": str(tmp_path / "gone.pth")}}))
    with pytest.raises(UserError, match=r"weights\.teacher: .*teacher\.pth does not fit this model: .*wrong shape"):
        StudyModels(model_recipes(cfg), runtime, None, IMAGE_SHAPE, 100).check_weights()  # 100 classes
