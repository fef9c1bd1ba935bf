"""The cached fast path must give the naive path's results: same predictions, losses within tolerance."""

import json

import numpy as np
import pytest

from distillbench.cli import main
from tests.conftest import study_args

MODELS = ["resnet50", "vgg16", "kd_ensemble"]


@pytest.fixture(scope="module")
def both_paths(tmp_path_factory, cifar_dir, weight_files):
    outs = {}
    # Caching must not change results: the default path in fp32 (bf16 would differ by more than float
    # tolerance) against the naive path. channels-last and the fused optimiser stay on: dropout masks do
    # not depend on the memory layout, and both change only the order of float operations.
    for name, sets in (("naive", ["perf.naive=true"]), ("cached", ["perf.precision=fp32"])):
        out = tmp_path_factory.mktemp(name)
        cache = tmp_path_factory.mktemp(f"{name}-cache")
        args = study_args(cifar_dir, weight_files, cache, out, f"models=[{','.join(MODELS)}]", "train.epochs=2",
            "data.train_limit=700", "data.val_size=100", "data.test_limit=200", *sets,
        )
        assert main(args) == 0
        outs[name] = out
    return outs


@pytest.mark.parametrize("key", MODELS)
def test_cached_path_matches_naive_path(both_paths, key):
    runs = {name: both_paths[name] / "runs" / key / "seed-0" for name in both_paths}
    with np.load(runs["naive"] / "predictions.npz") as naive, np.load(runs["cached"] / "predictions.npz") as cached:
        np.testing.assert_allclose(cached["logits"], naive["logits"], rtol=1e-3, atol=1e-4)
        assert np.mean(cached["y_pred"] == naive["y_pred"]) >= 0.995  # argmax may flip on a near-tie
    results = {name: json.loads((both_paths[name] / "results.json").read_text()) for name in both_paths}
    for naive_row, cached_row in zip(results["naive"][key]["history"], results["cached"][key]["history"]):
        for metric in ("train_loss", "val_loss"):
            assert cached_row[metric] == pytest.approx(naive_row[metric], rel=1e-4, abs=1e-5)


def test_naive_path_wrote_no_cache(both_paths, tmp_path_factory):
    # perf.naive turns the disk cache off as well: the naive run's cache directory stays empty.
    naive_cache = [p for p in tmp_path_factory.getbasetemp().glob("naive-cache*")]
    assert naive_cache and not any(any(p.iterdir()) for p in naive_cache)


def test_bf16_channels_last_default_costs_no_accuracy(tmp_path, cifar_dir, weight_files, cache_dir):
    """The default numerics (bf16 autocast where native, channels-last) against fp32 contiguous on the
    small CNN, three seeds each on the fixture: the mean test accuracy may not drop by more than 2 points.
    Eight epochs: after three, accuracy still climbs steeply and single seeds differ by 5 points either way."""
    accuracy = {}
    for precision, layout in (("fp32", "false"), ("bf16", "true")):
        out = tmp_path / precision
        args = study_args(cifar_dir, weight_files, cache_dir, out, "models=[small_cnn]", f"perf.precision={precision}",
                          f"perf.channels_last={layout}", "evaluation.efficiency=false", "train.epochs=8")  # fmt: skip
        assert main([*args, "--seeds", "3"]) == 0
        accuracy[precision] = json.loads((out / "results.json").read_text())["small_cnn"]["test_accuracy"]
    assert accuracy["bf16"] >= accuracy["fp32"] - 0.02, accuracy
