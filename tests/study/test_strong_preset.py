"""configs/strong.yaml at a tiny size runs end to end on generated data: full fine-tuning with its
recipe, augmentation per model, and students distilling teachers run online on their views."""

import json
from pathlib import Path

from distillbench.cli import main
from distillbench.config import load_config
from tests.conftest import study_args

PRESET = Path(__file__).parent.parent.parent / "configs" / "strong.yaml"


def test_strong_preset_values():
    cfg = load_config(PRESET)
    for teacher in ("resnet50", "vgg16"):
        spec = cfg.zoo[teacher]
        assert (spec.trainable_layers, spec.input_size, spec.optimizer, spec.schedule) == ("all", 224, "sgd", "cosine")
        assert spec.input_norm == "imagenet" and "crop_flip" in spec.augment
    assert all(cfg.zoo[key].augment == "crop_flip" for key in ("small_cnn", "kd_resnet50", "kd_ensemble"))
    assert cfg.models == ["small_cnn", "resnet50", "vgg16", "kd_resnet50", "kd_ensemble"]
    assert cfg.seeds == [0] and all("32x32" not in c.claim for c in cfg.comparisons)


def test_strong_study_at_a_tiny_size(tmp_path, cifar_dir, weight_files, cache_dir, capsys):
    out = tmp_path / "strong"
    tiny = ["data.train_limit=200", "data.val_size=40", "data.test_limit=50", "evaluation.efficiency=false",
            "evaluation.bootstrap_resamples=200", "train.epochs=1", "zoo.resnet50.input_size=48",
            "zoo.vgg16.input_size=48", "zoo.resnet50.epochs=1", "zoo.vgg16.epochs=1", "zoo.resnet50.batch_size=32",
            "zoo.vgg16.batch_size=32"]  # fmt: skip
    assert main([*study_args(cifar_dir, weight_files, cache_dir, out, *tiny), "--config", str(PRESET)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"small_cnn", "resnet50", "vgg16", "kd_resnet50", "kd_ensemble"}
    assert len(results["comparisons"]) == 4  # the paper's conclusions, tested on the strong teachers
    log = capsys.readouterr().out
    assert "[kd_ensemble] augment=crop_flip: cached teacher logits do not apply" in log
    for teacher in ("resnet50", "vgg16"):
        record = json.loads((out / "runs" / teacher / "seed-0" / "run.json").read_text())
        assert record["trainable_params"] == record["params"]
