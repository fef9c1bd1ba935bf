"""With augmentation on, nothing cached may stand in for an augmented batch: the study falls back
to running frozen layers and teachers on every batch, and says so."""

import json

import torch

from distillbench.cli import main
from distillbench.config import load_config
from distillbench.data import load_study_data
from distillbench.study.runner import Study
from distillbench.training.distill import kd_loss
from tests.conftest import study_args

SETS = ["train.augment=crop_flip", "models=[vgg16,kd_resnet50]", "train.epochs=1", "data.train_limit=300",
        "data.val_size=60", "data.test_limit=100", "evaluation.efficiency=false"]  # fmt: skip


def test_augmented_study_falls_back_to_on_the_fly_and_says_so(tmp_path, cifar_dir, weight_files, capsys):
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = study_args(cifar_dir, weight_files, cache, out, *SETS)
    assert main(args) == 0
    log = capsys.readouterr().out
    for key in ("resnet50", "vgg16"):
        assert f"[{key}] augment=crop_flip: cached frozen-layer activations do not apply" in log
    assert "[kd_resnet50] augment=crop_flip: cached teacher logits do not apply" in log
    assert not cache.exists() or not any(cache.iterdir())  # no activation or logit was cached
    results = json.loads((out / "results.json").read_text())
    assert results["study"]["train"]["augment"] == "crop_flip"
    assert {"resnet50", "vgg16", "kd_resnet50"} <= set(results["models"])
    assert (
        "augmented by random 4-pixel shifts and horizontal flips (not in the paper)" in (out / "report.md").read_text()
    )

    # The student's teacher sees the very batch the student sees (here: not a training image).
    cfg = load_config(None, [item for flag, item in zip(args, args[1:]) if flag == "--set"] + [f"data.dir={cifar_dir}"])
    study = Study(cfg, out, load_study_data(cfg.data))
    objective = study.executor.inputs.objective_for("kd_resnet50", 0, trains_on_images=True)
    batch = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    idx, labels, student_logits = torch.arange(8), torch.randint(0, 10, (8,)), torch.randn(8, 10)
    with torch.no_grad():
        teacher_logits = study.executor.models.trained_model("resnet50", 0)(batch).float()
    expected = kd_loss(student_logits, teacher_logits, labels, cfg.kd)
    torch.testing.assert_close(objective(idx, batch, labels, student_logits, 1), expected, rtol=2e-2, atol=1e-3)


def test_a_strong_teacher_recipe_and_a_student_augmented_alone(tmp_path, cifar_dir, weight_files, capsys):
    """ResNet50 fully fine-tuned at 64 px with SGD and a cosine schedule, a student with its own
    crop_flip: the teacher runs online on the student's augmented 32 px view, resized to 64 px."""
    out = tmp_path / "out"
    sets = ["models=[kd_resnet50]", "train.epochs=2", "data.train_limit=200", "data.val_size=40",
            "data.test_limit=50", "evaluation.efficiency=false", "zoo.resnet50.input_size=64",
            "zoo.resnet50.trainable_layers=all", "zoo.resnet50.optimizer=sgd", "zoo.resnet50.lr=0.01",
            "zoo.resnet50.schedule=cosine", "zoo.resnet50.batch_size=32", "zoo.kd_resnet50.augment=crop_flip"]  # fmt: skip
    args = study_args(cifar_dir, weight_files, tmp_path / "cache", out, *sets)
    assert main(args) == 0
    log = capsys.readouterr().out
    assert "[kd_resnet50] augment=crop_flip: cached teacher logits do not apply" in log
    assert "[resnet50] augment=" not in log  # the teacher trains on plain images (caches apply to it)
    teacher_run = json.loads((out / "runs" / "resnet50" / "seed-0" / "run.json").read_text())
    assert teacher_run["trainable_params"] == teacher_run["params"]  # every weight trains
    history = (out / "runs" / "resnet50" / "seed-0" / "history.csv").read_text().splitlines()
    # Cosine decays to 0: the last epoch's mean rate is below the first's, which (no warm-up) is below the peak.
    rates = [float(line.split(",")[6]) for line in history[1:]]
    assert len(rates) == 2 and 0 < rates[1] < rates[0] < 0.01

    cfg = load_config(None, [item for flag, item in zip(args, args[1:]) if flag == "--set"] + [f"data.dir={cifar_dir}"])
    study = Study(cfg, out, load_study_data(cfg.data))
    objective = study.executor.inputs.objective_for("kd_resnet50", 0, trains_on_images=True)
    teacher = study.executor.models.trained_model("resnet50", 0)
    seen = []
    teacher.body[0][0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[-2:]))
    batch = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)  # the student's (augmented) view
    labels, student_logits = torch.randint(0, 10, (8,)), torch.randn(8, 10)
    loss = objective(torch.arange(8), batch, labels, student_logits, 1)
    assert seen == [torch.Size([64, 64])]  # the teacher saw the student's batch, resized to its own size
    with torch.no_grad():
        expected = kd_loss(student_logits, teacher(batch).float(), labels, cfg.kd)
    torch.testing.assert_close(loss, expected, rtol=2e-2, atol=1e-3)
