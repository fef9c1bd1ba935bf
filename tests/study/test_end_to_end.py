"""The CLI runs all five models with two seeds on the fixture; every file of the layout is checked."""

import csv
import json
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from scipy import stats
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from distillbench.cli import main
from distillbench.data.cifar10 import CLASS_NAMES
from tests.conftest import N_TEST, SEEDS

MODELS = ["small_cnn", "resnet50", "vgg16", "kd_resnet50", "kd_ensemble"]


def _saved(study, key, seed):
    with np.load(study / "runs" / key / f"seed-{seed}" / "predictions.npz", allow_pickle=False) as saved:
        return {name: saved[name] for name in saved.files}


def test_layout_is_complete(paper_study):
    for name in ("config.yaml", "environment.json", "results.json", "report.md", "report.html",
                 "figures/accuracy.png", "figures/accuracy_vs_cost.png"):  # fmt: skip
        assert (paper_study / name).is_file(), name
    for key in MODELS:
        for kind in ("confusion", "loss", "per_class", "reliability"):
            assert (paper_study / "figures" / f"{key}_{kind}.png").is_file()
        for seed in SEEDS:
            run = paper_study / "runs" / key / f"seed-{seed}"
            for name in ("predictions.npz", "history.csv", "model.pt", "run.json"):
                assert (run / name).is_file(), f"{key}/seed-{seed}/{name}"
    assert not list(paper_study.rglob("*.tmp")), "an atomic write left a temporary file"


def test_files_parse(paper_study):
    config = yaml.safe_load((paper_study / "config.yaml").read_text())
    assert config["models"] == MODELS and config["train"]["epochs"] == 3 and config["seeds"] == SEEDS
    env = json.loads((paper_study / "environment.json").read_text())
    assert env["versions"]["torch"] and env["device"] == "cpu" and env["torch_threads"] >= 1
    for png in paper_study.glob("figures/*.png"):
        with Image.open(png) as image:
            assert image.size[0] > 400 and image.size[1] > 250
    saved = _saved(paper_study, "small_cnn", 1)
    assert saved["logits"].shape == (N_TEST, 10)
    np.testing.assert_array_equal(saved["y_pred"], saved["logits"].argmax(1))
    state = torch.load(paper_study / "runs" / "vgg16" / "seed-0" / "model.pt", weights_only=True)
    assert set(state) >= {"body.1.weight", "body.3.weight"}  # the paper's VGG16 trains Flatten-Dense-ReLU-Dense


def test_seeds_are_distinct_runs(paper_study):
    first, second = _saved(paper_study, "small_cnn", 0), _saved(paper_study, "small_cnn", 1)
    assert not np.allclose(first["logits"], second["logits"])  # a different initialisation and batch order
    for seed in SEEDS:
        assert (
            json.loads((paper_study / "runs" / "small_cnn" / f"seed-{seed}" / "run.json").read_text())["seed"] == seed
        )


def test_results_match_scikit_learn_and_scipy_on_saved_predictions(paper_study):
    results = json.loads((paper_study / "results.json").read_text())
    for key in MODELS:
        entry = results["models"][key]
        assert [s["seed"] for s in entry["seeds"]] == SEEDS
        accuracies = []
        for seed, record in zip(SEEDS, entry["seeds"]):
            saved = _saved(paper_study, key, seed)
            y_true, y_pred = saved["y_true"], saved["y_pred"]
            accuracies.append(np.mean(y_true == y_pred))
            assert record["test_accuracy"] == pytest.approx(accuracies[-1])
            p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(10), zero_division=0)
            for i, name in enumerate(CLASS_NAMES):
                row = record["per_class"][name]
                assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
                    (p[i], r[i], f[i], s[i])
                )
                assert row["accuracy"] == pytest.approx(np.mean(y_pred[y_true == i] == i))
            assert record["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=range(10)).tolist()
            history = list(csv.DictReader(open(paper_study / "runs" / key / f"seed-{seed}" / "history.csv")))
            assert len(history) == record["epochs_trained"] == len(record["history"])
            best = min(range(len(history)), key=lambda i: float(history[i]["val_loss"]))
            assert record["best_epoch"] == best + 1
        # Aggregates over seeds, against scipy's t interval.
        assert entry["test_accuracy"] == pytest.approx(np.mean(accuracies))
        assert entry["test_accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
        if np.std(accuracies) > 0:  # scipy gives NaN for a zero-width interval
            low, high = stats.t.interval(
                0.95, len(accuracies) - 1, loc=np.mean(accuracies), scale=stats.sem(accuracies)
            )
        else:
            low = high = accuracies[0]
        assert entry["test_accuracy_ci95"] == pytest.approx([low, high])
        assert entry["per_class"]["cat"]["support"] == entry["seeds"][0]["per_class"]["cat"]["support"]
        assert isinstance(entry["per_class"]["cat"]["support"], int)
        assert entry["per_class"]["cat"]["f1"] == pytest.approx(
            np.mean([s["per_class"]["cat"]["f1"] for s in entry["seeds"]])
        )
        assert entry["confusion_matrix"] == np.sum([s["confusion_matrix"] for s in entry["seeds"]], axis=0).tolist()
        assert entry["params"] >= entry["trainable_params"] > 0 and entry["train_seconds"] > 0


def test_calibration_and_agreement_are_recomputable(paper_study):
    results = json.loads((paper_study / "results.json").read_text())
    saved = _saved(paper_study, "kd_resnet50", 1)
    logits = torch.tensor(saved["logits"], dtype=torch.float64)
    probs = torch.softmax(logits, 1).numpy()
    onehot = np.eye(10)[saved["y_true"]]
    record = results["models"]["kd_resnet50"]["seeds"][1]
    assert record["calibration"]["nll"] == pytest.approx(-np.mean(np.log(probs[np.arange(N_TEST), saved["y_true"]])))
    assert record["calibration"]["brier"] == pytest.approx(np.mean(np.sum((probs - onehot) ** 2, axis=1)))
    teacher = _saved(paper_study, "resnet50", 1)  # seed-matched teacher
    assert record["teacher_agreement"] == pytest.approx(np.mean(saved["y_pred"] == teacher["y_pred"]))
    assert "teacher_agreement" not in results["models"]["small_cnn"]


def test_ensemble_teacher_is_the_seed_matched_mean_of_logits(paper_study):
    results = json.loads((paper_study / "results.json").read_text())
    expected = []
    for seed in SEEDS:
        r, v = _saved(paper_study, "resnet50", seed), _saved(paper_study, "vgg16", seed)
        expected.append(np.mean(((r["logits"] + v["logits"]) / 2).argmax(1) == r["y_true"]))
    ensemble = results["teachers"]["ensemble"]
    assert ensemble["members"] == ["resnet50", "vgg16"]
    assert [s["test_accuracy"] for s in ensemble["seeds"]] == pytest.approx(expected)
    assert ensemble["test_accuracy"] == pytest.approx(np.mean(expected))
    assert set(ensemble["calibration"]) >= {"ece", "nll", "brier"}


def test_comparisons_are_paired_tests_of_the_saved_predictions(paper_study):
    results = json.loads((paper_study / "results.json").read_text())
    pairs = [(c["a"], c["b"]) for c in results["comparisons"]]
    assert pairs == [
        ("small_cnn", "kd_resnet50"),
        ("small_cnn", "kd_ensemble"),
        ("kd_resnet50", "kd_ensemble"),
        ("vgg16", "resnet50"),
    ]
    comparison = results["comparisons"][2]
    diffs = []
    for seed, p in zip(SEEDS, comparison["mcnemar_p"]):
        a, b = _saved(paper_study, "kd_resnet50", seed), _saved(paper_study, "kd_ensemble", seed)
        correct_a, correct_b = a["y_pred"] == a["y_true"], b["y_pred"] == b["y_true"]
        diffs.append(correct_a.mean() - correct_b.mean())
        only_a, only_b = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
        expected = stats.binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
        assert p == pytest.approx(expected)
    assert comparison["accuracy_diff_per_seed"] == pytest.approx(diffs)
    assert comparison["accuracy_diff"] == pytest.approx(np.mean(diffs))
    if np.std(diffs) > 0:  # the seed interval is scipy's t interval of the per-seed differences
        expected_ci = stats.t.interval(0.95, len(diffs) - 1, loc=np.mean(diffs), scale=stats.sem(diffs))
        assert comparison["ci95_seeds"] == pytest.approx(list(expected_ci))
    low, high = comparison["ci95_images"]
    assert low <= comparison["accuracy_diff"] <= high
    assert comparison["outcome"] in ("supported", "contradicted", "inconclusive")
    assert comparison["verdict"].startswith(comparison["outcome"].capitalize())


def test_efficiency_of_the_small_cnn_matches_its_closed_form(paper_study):
    results = json.loads((paper_study / "results.json").read_text())
    efficiency = results["models"]["small_cnn"]["efficiency"]
    # conv 3->32 (30x30 out), conv 32->64 (13x13 out), dense 2304->256, dense 256->10
    assert efficiency["macs"] == 30 * 30 * 32 * 27 + 13 * 13 * 64 * 288 + 2304 * 256 + 256 * 10
    assert efficiency["params"] == efficiency["trainable_params"] == 612_042
    assert efficiency["checkpoint_bytes"] == (paper_study / "runs" / "small_cnn" / "seed-0" / "model.pt").stat().st_size
    assert efficiency["latency_ms_batch1"] > 0 and efficiency["images_per_s_batch256"] > 0
    assert (
        efficiency["image_shape"] == [3, 32, 32]
        and "multiply-accumulates per 32x32 image" in (paper_study / "report.md").read_text()
    )
    assert results["models"]["vgg16"]["efficiency"]["macs"] > 50 * efficiency["macs"]


def test_report_has_the_papers_tables_and_loud_warnings(paper_study):
    report = (paper_study / "report.md").read_text()
    for heading in ("## Table 1: test accuracy", "## Table 2", "## The paper's conclusions, tested",
                    "## Table 3: calibration", "## Table 4: efficiency"):  # fmt: skip
        assert heading in report
    assert "GENERATED DATA" in report and "RANDOM BACKBONE WEIGHTS" not in report
    assert "no augmentation (as in the paper)" in report
    for key in MODELS:
        assert f"figures/{key}_confusion.png" in report and f"figures/{key}_reliability.png" in report
    for name in CLASS_NAMES:
        assert f"| {name} |" in report
    results = json.loads((paper_study / "results.json").read_text())
    entry = results["models"]["kd_ensemble"]
    assert f"{100 * entry['test_accuracy']:.2f} ± {100 * entry['test_accuracy_std']:.2f}" in report
    for comparison in results["comparisons"]:
        assert comparison["verdict"] in report


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.links, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if "src" in attrs:
            self.sources.append(attrs["src"])
        if "href" in attrs:
            self.links.append(attrs["href"])


def test_html_report_is_self_contained(paper_study):
    page = _Page()
    page.feed((paper_study / "report.html").read_text())
    page.close()
    markdown_images = (paper_study / "report.md").read_text().count("![")
    assert len(page.sources) == markdown_images > 0
    assert all(src.startswith("data:image/png;base64,") for src in page.sources)
    assert not [link for link in page.links if not link.startswith("#")]  # nothing fetched or linked out
    assert page.tags.count("table") == 5  # Tables 1-4 and the conclusions


def test_report_command_rebuilds_identical_results(paper_study):
    before = json.loads((paper_study / "results.json").read_text())
    for name in ("results.json", "report.md", "report.html", "figures/accuracy.png", "figures/vgg16_reliability.png"):
        (paper_study / name).unlink()
    assert main(["report", str(paper_study)]) == 0
    after = json.loads((paper_study / "results.json").read_text())
    assert after == before
    for name in ("report.md", "report.html", "figures/accuracy.png", "figures/vgg16_reliability.png"):
        assert (paper_study / name).is_file()
