"""configs/cifar100-kd.yaml end to end at the smallest size that proves it, on generated data in
cifar-100-python format: the resnet32x4 -> resnet8x4 pair with four of its students (scratch, KD,
DKD, and CRD: a feature method with learned parts), two seeds, two epochs, the
teacher released (a checkpoint in the benchmark's format written here from a randomly initialised
resnet32x4: the preset's one switch), and the report's
"Published vs reproduced" and per-pair "Which distillation works here" checked against numbers
recomputed here from the runs' own files. Every other model of the preset is checked to resolve."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from distillbench.cli import main
from distillbench.config import ModelDef
from distillbench.data.synthetic import write_cifar100_like
from distillbench.models import build_model
from distillbench.models.zoo import zoo_network
from distillbench.study.resolve import load_study_config

PRESET = Path(__file__).parents[2] / "configs" / "cifar100-kd.yaml"
# The pair's scratch, KD, DKD and CRD students (DIST and LS-KD train as KD does; the other feature methods
# through the same feature path, on a smaller pair: tests/study/test_feature_distillation.py; CI time is short).
PAIR = ["resnet8x4", "resnet8x4_kd", "resnet8x4_dkd", "resnet8x4_crd"]
SEEDS, EPOCHS = [0, 1], 2


def test_every_model_of_the_preset_resolves_with_the_benchmark_recipe():
    cfg = load_study_config(PRESET)
    assert len(cfg.models) == 40 and {cfg.zoo[t].arch for t in ("resnet32x4", "wrn_40_2", "vgg13", "resnet50_cifar")} == {
        "resnet32x4", "wrn_40_2", "vgg13_bn", "resnet50_cifar"
    }  # fmt: skip
    for key in cfg.models:
        spec = cfg.zoo[key]
        assert (spec.optimizer, spec.momentum, spec.weight_decay, spec.decay_all) == ("sgd", 0.9, 5e-4, True)
        assert (spec.schedule, spec.milestones, spec.gamma) == ("multistep", [150, 180, 210], 0.1)
        assert spec.lr == (0.01 if spec.arch == "mobilenetv2" else 0.05)
    assert (cfg.data.val_size, cfg.train.epochs, cfg.train.batch_size, cfg.train.augment) == (0, 240, 64, "crop_flip")
    assert cfg.zoo["wrn_16_2_dkd"].distill["beta"] == 6 and cfg.zoo["resnet8x4_dkd"].distill["beta"] == 8
    assert {row.model for row in cfg.published} <= set(cfg.zoo) and len(cfg.published) == 39


@pytest.fixture(scope="module")
def preset_study(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cifar100-kd")
    data = tmp / "cifar-100-python"
    write_cifar100_like(data, n_train=600, n_test=100, classes=20)
    # The released teacher: the benchmark's checkpoint format, {'model': state_dict, 'epoch': ...}.
    torch.manual_seed(0)
    teacher = build_model(ModelDef(arch="resnet32x4", lr=0.05, init="torch"), None, (3, 32, 32), 20)
    checkpoint = tmp / "resnet32x4_vanilla" / "ckpt_epoch_240.pth"
    checkpoint.parent.mkdir()
    torch.save({"model": zoo_network(teacher).state_dict(), "epoch": 240}, checkpoint)
    out = tmp / "study"
    sets = [
        f"models={json.dumps(PAIR)}", f"seeds={json.dumps(SEEDS)}", f"train.epochs={EPOCHS}", "data.train_limit=100",
        f"weights.resnet32x4={checkpoint}", "evaluation.efficiency=false", "evaluation.figures=false",
        f"perf.cache_dir={tmp / 'cache'}",
    ]  # fmt: skip
    args = ["run", "--config", str(PRESET), "--data-dir", str(data), "--out", str(out), "--device", "cpu"]
    assert main([*args, *[a for s in sets for a in ("--set", s)]]) == 0
    return out


def _history(study: Path, key: str, seed: int) -> list[dict[str, str]]:
    with open(study / "runs" / key / f"seed-{seed}" / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _accuracy(study: Path, key: str, seed: int) -> float:
    with np.load(study / "runs" / key / f"seed-{seed}" / "predictions.npz", allow_pickle=False) as saved:
        return float(np.mean(saved["logits"].argmax(1) == saved["y_true"]))


def test_the_released_teacher_is_evaluated_not_trained(preset_study):
    for seed in SEEDS:
        record = json.loads((preset_study / "runs" / "resnet32x4" / f"seed-{seed}" / "run.json").read_text())
        assert record["selected"] == "released" and record["epochs_trained"] == 0
        assert "ckpt_epoch_240.pth" in record["weights"] and "not trained" in record["weights"]
        assert _history(preset_study, "resnet32x4", seed) == []
    assert _accuracy(preset_study, "resnet32x4", 0) == _accuracy(preset_study, "resnet32x4", 1)


def test_published_vs_reproduced_numbers_come_from_the_runs(preset_study):
    results = json.loads((preset_study / "results.json").read_text())
    for key in PAIR:
        block = results["models"][key]["reproduction"]
        histories = [_history(preset_study, key, seed) for seed in SEEDS]
        assert all(len(h) == EPOCHS and "val_accuracy" not in h[0] for h in histories)
        best = [max(float(row["test_accuracy"]) for row in h) for h in histories]
        last = [_accuracy(preset_study, key, seed) for seed in SEEDS]  # the kept weights are the last epoch's
        assert block["best_epoch_on_test"]["mean"] == pytest.approx(np.mean(best), abs=1e-6)
        assert block["last_epoch"]["mean"] == pytest.approx(np.mean(last), abs=1e-6)
        assert block["best_minus_last"]["mean"] == pytest.approx(np.mean(best) - np.mean(last), abs=1e-6)
        assert block["validation_selected"] is None  # no validation split
    dkd = results["models"]["resnet8x4_dkd"]["reproduction"]["published"][0]
    kd = results["models"]["resnet8x4_kd"]["reproduction"]["published"][0]
    assert (dkd["published_accuracy"], dkd["compared"]) == (pytest.approx(0.7632), "best_epoch_on_test")  # mdistiller
    assert (kd["published_accuracy"], kd["compared"]) == (pytest.approx(0.7333), "last_epoch")  # RepDistiller
    assert dkd["verdict"] == "below" and dkd["n"] == 2  # chance-level generated data: far below 76.32
    report = (preset_study / "report.md").read_text()
    assert "## Published vs reproduced" in report and "| ResNet8x4 DKD | 76.32 | DKD [" in report


def test_each_student_is_compared_with_its_own_scratch_model_and_kd(preset_study):
    results = json.loads((preset_study / "results.json").read_text())
    rows = {row["model"]: row for row in results["distillation"]}
    assert set(rows) == set(PAIR)
    for key in ("resnet8x4_dkd", "resnet8x4_crd"):
        assert (rows[key]["scratch"], rows[key]["kd_reference"]) == ("resnet8x4", "resnet8x4_kd")
        assert "vs_scratch" in rows[key] and "vs_kd" in rows[key]
    assert "own architecture trained from scratch" in (preset_study / "report.md").read_text()
    crd = results["models"]["resnet8x4_crd"]
    assert (crd["method"], crd["aggregation"]) == ("crd", None)  # one teacher: nothing aggregated


def test_learned_parts_are_saved_beside_the_student_not_in_it(preset_study):
    expected = {"resnet8x4_crd": 2 * (256 * 128 + 128)}  # CRD's two 256 -> 128 embeddings (its memory: buffers)
    scratch = json.loads((preset_study / "runs" / "resnet8x4" / "seed-0" / "run.json").read_text())
    for key, parameters in expected.items():
        for seed in SEEDS:
            run = preset_study / "runs" / key / f"seed-{seed}"
            record = json.loads((run / "run.json").read_text())
            assert record["distill_parts"]["parameters"] == parameters and (run / "distill_parts.pt").is_file()
            assert record["params"] == scratch["params"]  # the deployed student is the student alone
            assert (
                torch.load(run / "model.pt", weights_only=True).keys()
                == torch.load(preset_study / "runs" / "resnet8x4" / "seed-0" / "model.pt", weights_only=True).keys()
            )
    assert (
        scratch["distill_parts"] is None
        and not (preset_study / "runs" / "resnet8x4" / "seed-0" / "distill_parts.pt").exists()
    )
