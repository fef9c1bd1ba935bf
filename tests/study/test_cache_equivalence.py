"""The cached fast path must give the naive path's results: same predictions, losses within tolerance."""

import json

import numpy as np
import pytest

from distillbench.cli import main
from tests.conftest import study_args

# Which layers are frozen decides what is cached: every setting the paper preset or a user would use.
VARIANTS = {
    "paper": (["resnet50", "vgg16", "kd_ensemble"], []),  # trainable_layers 0: heads on cached features
    # The last weight layer trains, and the cached side has the default layout (channels-last): teachers
    # only, see below.
    "last_layer": (
        ["resnet50", "vgg16"],
        ["zoo.resnet50.trainable_layers=1", "zoo.vgg16.trainable_layers=1", "perf.channels_last=true"],
    ),
    # ResNet50's last three weight layers are bn2, conv3 and bn3 of its last block; that block's conv1,
    # bn1 and conv2 sit in the trained body but stay frozen, bn1 in inference mode on both paths.
    "last_block": (["resnet50"], ["zoo.resnet50.trainable_layers=3"]),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def both_paths(request, tmp_path_factory, cifar_dir, weight_files):
    models, sets = VARIANTS[request.param]
    outs = {}
    # Caching must not change results: the default path in fp32 against the naive path. Contiguous
    # layout except in the last_layer variant: channels-last kernels round differently, by ~1e-5 in a
    # teacher's logits, which a student on near-chance data amplifies through Adam, so that variant has
    # no student. The fused optimiser stays on.
    for name, path_sets in (
        ("naive", ["perf.naive=true"]),
        ("cached", ["perf.precision=fp32", "perf.channels_last=false"]),
    ):
        out = tmp_path_factory.mktemp(f"{request.param}-{name}")
        cache = tmp_path_factory.mktemp(f"{name}-cache")
        args = study_args(cifar_dir, weight_files, cache, out, f"models=[{','.join(models)}]", "train.epochs=2",
            "data.train_limit=400", "data.val_size=80", "data.test_limit=200", "evaluation.efficiency=false",
            *path_sets, *sets,
        )  # fmt: skip
        assert main(args) == 0
        outs[name] = out
    return models, outs


def test_cached_path_matches_naive_path(both_paths):
    models, outs = both_paths
    results = {name: json.loads((outs[name] / "results.json").read_text()) for name in outs}
    for key in models:
        runs = {name: outs[name] / "runs" / key / "seed-0" for name in outs}
        with np.load(runs["naive"] / "predictions.npz") as naive, np.load(runs["cached"] / "predictions.npz") as cached:
            np.testing.assert_allclose(cached["logits"], naive["logits"], rtol=1e-3, atol=1e-4, err_msg=key)
            assert np.mean(cached["y_pred"] == naive["y_pred"]) >= 0.995  # argmax may flip on a near-tie
        naive_history, cached_history = (results[name]["models"][key]["history"] for name in ("naive", "cached"))
        assert len(naive_history) == len(cached_history) == 2
        for naive_row, cached_row in zip(naive_history, cached_history):
            for metric in ("train_loss", "train_ce", "val_loss"):
                assert cached_row[metric] == pytest.approx(naive_row[metric], rel=1e-4, abs=1e-5), (key, metric)


def test_naive_path_wrote_no_cache(both_paths, tmp_path_factory):
    # perf.naive turns the disk cache off as well: the naive run's cache directory stays empty.
    naive_cache = [p for p in tmp_path_factory.getbasetemp().glob("naive-cache*")]
    assert naive_cache and not any(any(p.iterdir()) for p in naive_cache)


def test_the_default_numerics_cost_no_accuracy(tmp_path, cifar_dir, weight_files, cache_dir):
    """The default numerics (precision auto: bf16 autocast where the CPU computes it natively, else
    fp32; channels-last) against fp32 contiguous on the small CNN, three seeds each on the fixture: the
    mean test accuracy may not drop by more than 2 points. Eight epochs: after three, accuracy still
    climbs steeply and single seeds differ by 5 points either way. (bf16 emulated on a CPU without it
    is never a default: it would only make this test slow.)"""
    accuracy = {}
    for name, precision, layout in (("reference", "fp32", "false"), ("default", "auto", "true")):
        out = tmp_path / name
        args = study_args(cifar_dir, weight_files, cache_dir, out, "models=[small_cnn]", f"perf.precision={precision}",
                          f"perf.channels_last={layout}", "evaluation.efficiency=false", "train.epochs=8")  # fmt: skip
        assert main([*args, "--seeds", "3"]) == 0
        accuracy[name] = json.loads((out / "results.json").read_text())["models"]["small_cnn"]["test_accuracy"]
    assert accuracy["default"] >= accuracy["reference"] - 0.02, accuracy
