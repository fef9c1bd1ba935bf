"""Published vs reproduced: each model's ``reproduction`` block (``study.results.reproduction``) from
hand-made seed records, and the report's section from it. Every expected number is worked out here
from the per-seed values (means, t intervals with t quantiles from tables), not by the code under
test. Also: a study without a validation split says its numbers are the last epoch's, and its loss
curves draw without validation keys."""

import copy
import math
import re
import statistics
import time

import pytest

from distillbench.config import EvaluationConfig, PublishedRow
from distillbench.reporting.figures import loss_curves
from distillbench.reporting.recipes import training_lines
from distillbench.reporting.report import render_markdown
from distillbench.study.results import epoch_choices, reproduction
from tests.reporting.generated import generated_results

T975_DF2 = 4.302653  # Student-t 0.975 quantile, 2 degrees of freedom (three seeds)
EVALUATION = EvaluationConfig()  # margin 0.5 points, 0.3 points to resolve

# Per seed, the test accuracy after each of three epochs, and the validation-selected accuracy.
SCRATCH = {0: ([0.600, 0.705, 0.700], 0.703), 1: ([0.610, 0.707, 0.702], 0.705), 2: ([0.590, 0.703, 0.698], 0.701)}
KD = {0: ([0.600, 0.692, 0.690], 0.69), 1: ([0.600, 0.705, 0.700], 0.70), 2: ([0.600, 0.681, 0.680], 0.68)}
ROWS = [
    PublishedRow(model="small_cnn", value=70.45, source="mdistiller, Table 2, github.com/x/y", selection="best_epoch"),
    PublishedRow(model="small_cnn", value=72.0, source="RepDistiller; CRD paper Table 1", selection="last_epoch"),
    PublishedRow(model="kd_resnet50", value=69.0, source="A blog post", selection="unknown", runs="mean of 3 runs"),
    PublishedRow(model="resnet50", value=72.34, source="RepDistiller released teacher", selection="last_epoch"),
]


def _history(test: list[float], validation: bool = True) -> list[dict[str, float]]:
    rows = []
    for epoch, accuracy in enumerate(test, start=1):
        row = {"epoch": epoch, "train_loss": 2 / epoch, "train_ce": 2 / epoch, "train_accuracy": 0.3 * epoch}
        if validation:
            row |= {"val_loss": 2.1 / epoch, "val_accuracy": 0.25 * epoch}
        rows.append(row | {"lr": 0.1, "seconds": 1.0, "test_loss": 1.0, "test_accuracy": accuracy})
    return rows


def _set_seeds(model: dict, per_seed: dict, selected: str = "validation") -> None:
    for seed in model["seeds"]:
        test, kept = per_seed[seed["seed"]]
        seed.update(history=_history(test), test_accuracy=kept, selected=selected, epochs_trained=3, best_epoch=2)


def _released(model: dict) -> None:
    for seed in model["seeds"]:
        seed.update(history=[], test_accuracy=0.7234, epochs_trained=0, best_epoch=0)
        seed.pop("selected", None)


@pytest.fixture(scope="module")
def results() -> dict:
    """The generated study (10 classes, three seeds) with published rows for three models."""
    results = generated_results(num_classes=10, groups=0)
    models = results["models"]
    _set_seeds(models["small_cnn"], SCRATCH)
    _set_seeds(models["kd_resnet50"], KD)
    _released(models["resnet50"])
    for key in ("small_cnn", "kd_resnet50", "resnet50"):
        rows = [row for row in ROWS if row.model == key]
        models[key]["reproduction"] = reproduction(models[key]["seeds"], rows, EVALUATION)
    results["study"]["evaluation"] |= {"equivalence_margin": 0.5, "resolvable_difference": 0.3}
    results["study"]["published"] = [row.model_dump() for row in ROWS]
    return results


def _interval(mean: float, std: float) -> str:
    half = T975_DF2 * std / math.sqrt(3)
    return f"{mean:.2f} [{mean - half:.2f}, {mean + half:.2f}]"


def _section(markdown_text: str) -> str:
    start = markdown_text.index("## Published vs reproduced")
    end = markdown_text.index("\n## ", start + 1)
    return markdown_text[start:end]


def _table(section: str) -> list[list[str]]:
    lines = [line for line in section.split("\n") if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in [lines[0], *lines[2:]]]


def test_each_epoch_choice_is_averaged_over_seeds(results):
    block = results["models"]["small_cnn"]["reproduction"]
    # Last epoch 70.0, 70.2, 69.8; best 70.5, 70.7, 70.3; kept by validation 70.3, 70.5, 70.1 (points).
    assert block["last_epoch"]["per_seed"] == pytest.approx([0.700, 0.702, 0.698])
    assert block["last_epoch"]["mean"] == pytest.approx(0.700)
    assert block["best_epoch_on_test"]["mean"] == pytest.approx(0.705)
    assert block["validation_selected"]["mean"] == pytest.approx(0.703)
    assert block["best_minus_last"]["per_seed"] == pytest.approx([0.005] * 3)
    half = T975_DF2 * 0.002 / math.sqrt(3)
    assert block["last_epoch"]["ci95"] == pytest.approx([0.700 - half, 0.700 + half])
    # std 0.2 points, 0.3 to resolve: n = 5 needs (2.7764 + 0.9410)^2 * (0.2 / 0.3)^2 = 6.14 > 5;
    # n = 6 needs (2.5706 + 0.9195)^2 * 4 / 9 = 5.41 <= 6.
    assert block["last_epoch"]["seeds_to_resolve"] == 6
    assert not block["released"] and block["selected"] == "validation"


def test_each_published_number_is_tested_against_ours_chosen_the_same_way(results):
    scratch = results["models"]["small_cnn"]["reproduction"]["published"]
    best, last = scratch
    assert best["compared"] == "best_epoch_on_test" and best["mean"] == pytest.approx(0.705)
    # t = (70.5 - 69.95) / (0.2 / sqrt 3) = 4.76 and (70.5 - 70.95) / 0.1155 = -3.90, both past 2.92.
    assert best["verdict"] == "reproduced" and best["p_tost"] < 0.05
    assert last["compared"] == "last_epoch" and last["verdict"] == "below"  # 95% CI [69.50, 70.50] < 72
    unknown = results["models"]["kd_resnet50"]["reproduction"]["published"][0]
    assert unknown["compared"] == "last_epoch" and "does not say" in unknown["compared_why"]
    assert unknown["verdict"] == "inconclusive"  # std 1 point: the interval is 2.5 points wide each way
    released = results["models"]["resnet50"]["reproduction"]
    assert released["released"] and released["last_epoch"] is None and released["best_minus_last"] is None
    assert released["checkpoint"]["mean"] == pytest.approx(0.7234)
    assert released["published"][0]["compared"] == "checkpoint"
    assert released["published"][0]["verdict"] == "reproduced"


def test_the_section_tabulates_every_number_with_its_interval(results):
    section = _section(render_markdown(results))
    table = _table(section)
    header, rows = table[0], table[1:]
    assert len(header) == 12 and all(len(row) == 12 for row in rows)
    by_source = {row[2]: dict(zip(header, row)) for row in rows}
    best = by_source["mdistiller [1]"]
    assert best["Model"] == "Small CNN" and best["Published (%)"] == "70.45" and best["Selection"] == "best epoch"
    assert best["Ours: last epoch (%)"] == _interval(70.0, 0.2)
    assert best["Ours: best epoch on test (%, optimistic)"] == _interval(70.5, 0.2)
    assert best["Ours: validation-selected (%)"] == _interval(70.3, 0.2)
    assert best["Seeds"] == "3" and best["Compared with"] == "best epoch on test"
    assert best["Verdict"] == "**reproduced**"
    assert best["Best − last (points)"] == "+0.50 [0.50, 0.50]"  # the same gap in every seed
    assert best["Seeds to resolve 0.3 points"] == "6"
    assert by_source["RepDistiller [2]"]["Verdict"] == "**below**"
    kd = by_source["A blog post [4]"]
    assert kd["Verdict"] == "**inconclusive**" and kd["Selection"] == "unknown"
    assert kd["Ours: last epoch (%)"] == _interval(69.0, 1.0)
    assert kd["Ours: validation-selected (%)"] == _interval(69.0, 1.0)
    teacher = by_source["RepDistiller released… [3]"]
    assert teacher["Ours: last epoch (%)"] == "72.34 (released checkpoint)"
    assert teacher["Ours: best epoch on test (%, optimistic)"] == "-"
    assert teacher["Compared with"] == "released checkpoint" and teacher["Verdict"] == "**reproduced**"
    assert teacher["Seeds to resolve 0.3 points"] == "-"  # seeds change nothing in a released checkpoint
    # What each number means, why the literature's are not comparable, and the sources in full.
    for words in ("optimistic", "mdistiller", "RepDistiller", "copied from the CRD paper", "TOST"):
        assert words in section
    assert "[4] A blog post (mean of 3 runs)" in section and "[1] mdistiller, Table 2, github.com/x/y" in section


def test_a_model_without_a_published_number_has_a_row_of_its_own(results):
    results = copy.deepcopy(results)
    vgg = results["models"]["vgg16"]
    vgg["reproduction"] = reproduction(vgg["seeds"], [], EVALUATION)  # a study with test_every_epoch
    rows = {row[0]: row for row in _table(_section(render_markdown(results)))[1:]}
    # Its generated runs kept their last (fourth) epoch: the predictions are the last epoch's.
    last = [seed["test_accuracy"] for seed in vgg["seeds"]]
    assert rows["Fine-tuned VGG16"][1:4] == ["-", "-", "-"]
    mean, std = statistics.mean(100 * a for a in last), statistics.stdev(100 * a for a in last)
    assert rows["Fine-tuned VGG16"][4] == _interval(mean, std)
    assert rows["Fine-tuned VGG16"][5] == "-"  # no test accuracy per epoch in its history


def test_without_published_rows_or_test_tracking_there_is_no_section():
    assert "Published vs reproduced" not in render_markdown(generated_results(num_classes=10, groups=0))


def test_without_a_validation_split_the_last_epoch_is_every_number():
    seed = {"seed": 0, "test_accuracy": 0.71, "history": _history([0.6, 0.71], validation=False)}
    seed |= {"selected": "last_epoch", "epochs_trained": 2, "best_epoch": 2}
    assert epoch_choices(seed) == {"last_epoch": 0.71, "best_epoch_on_test": 0.71, "validation_selected": None}
    untracked = copy.deepcopy(seed)
    for row in untracked["history"]:
        del row["test_accuracy"], row["test_loss"]
    untracked["test_accuracy"] = 0.715  # from the predictions, which the last epoch's weights made
    assert epoch_choices(untracked)["last_epoch"] == 0.715
    row = PublishedRow(model="small_cnn", value=71.0, source="mdistiller", selection="best_epoch")
    block = reproduction([untracked], [row], EVALUATION)
    assert block["selected"] == "last_epoch" and block["best_epoch_on_test"] is None
    assert block["published"][0]["verdict"] == "inconclusive"
    assert "test_every_epoch" in block["published"][0]["why"]

    results = generated_results(num_classes=10, groups=0)
    results["study"]["val_size"] = 0
    results["study"]["train"] |= {"patience": None, "test_every_epoch": True}
    line = training_lines(results)[0]
    assert "no validation split" in line and "last epoch's" in line and "measured after every epoch" in line
    assert "No validation split" in render_markdown(results)


def test_loss_curves_draw_without_validation_keys_or_without_history():
    start = time.perf_counter()
    train_only = loss_curves({0: _history([0.5, 0.6, 0.7], validation=False)}, {0: 3}, "No val")
    released = loss_curves({0: []}, {0: None}, "Released")
    assert train_only.startswith(b"\x89PNG") and released.startswith(b"\x89PNG")
    assert time.perf_counter() - start < 10  # two small figures
