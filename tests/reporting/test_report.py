"""A report stays readable from the paper's 5 models and 10 classes to 15 models and 100 classes:
no Markdown table wider than 16 columns, the long parts collapsed in HTML, the most-confused pairs
listed where the confusion matrix has too many cells to read, settings in words, every per-class
number in per_class.csv. Drawn without figures (``evaluation.figures: false``): the figures have
their own tests."""

import copy
import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from distillbench.reporting.html import render_html
from distillbench.reporting.report import PER_CLASS_CSV, REPORT_MD, render_blocks, render_markdown, write_report
from distillbench.reporting.text import MAX_TABLE_COLUMNS
from tests.reporting.generated import generated_results

STORED = json.loads((Path(__file__).parent.parent / "fixtures" / "stored_study" / "results.json").read_text())
_CELL_BORDER = re.compile(r"(?<!\\)\|")  # an escaped \| inside a cell is text


def _without_figures(results: dict) -> dict:
    results = copy.deepcopy(results)
    results["study"]["evaluation"]["figures"] = False
    return results


@pytest.fixture(scope="module")
def large() -> dict:
    """15 models, 100 classes in 20 superclasses, 3 seeds; schema 3."""
    return generated_results()


def tables(markdown_text: str) -> list[list[list[str]]]:
    """Every Markdown table of ``markdown_text``: its rows (header first, the rule left out) of cells."""
    found, current = [], []
    for line in [*markdown_text.split("\n"), ""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in _CELL_BORDER.split(line)[1:-1]])
        elif current:
            found.append([current[0], *current[2:]])
            current = []
    return found


class _Page(HTMLParser):
    """The page's elements, checked to nest: every element closed, in order."""

    VOID = {"meta", "img", "br", "hr", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.tags: list[str] = []
        self.summaries: list[str] = []
        self._in_summary = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self._in_summary |= tag == "summary"
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()
        self._in_summary &= tag != "summary"

    def handle_data(self, data: str) -> None:
        if self._in_summary and data.strip():
            self.summaries.append(data.strip())


def _page(results: dict, root: Path) -> _Page:
    page = _Page()
    page.feed(render_html(render_blocks(results), root, "T"))
    page.close()
    assert page.open == [], page.open
    return page


def test_the_papers_report_keeps_its_five_tables_within_16_columns(tmp_path):
    text = render_markdown(_without_figures(STORED))
    found = tables(text)
    assert max(len(row) for table in found for row in table) <= MAX_TABLE_COLUMNS
    assert len(found) == 5  # Tables 1-4 and the conclusions: nothing is collapsed at 5 models and 10 classes
    table2 = found[2]
    # One class per row, P, R and F1 per model, recall once (it is the class's accuracy), all in %.
    assert table2[0][:4] == ["Class", "Small CNN P", "Small CNN R", "Small CNN F1"] and len(table2[0]) == 16
    assert table2[5][0] == "deer" and table2[5][1:4] == ["10.7", "84.2", "18.9"]
    assert "Top-5 accuracy (%)" in found[0][0] and "superclass" not in text.lower()  # 10 classes, no superclasses
    assert "soft term scaled by T^2: no." in text and "False" not in text
    page = _page(_without_figures(STORED), tmp_path)
    assert page.tags.count("table") == 5 and "details" not in page.tags


def test_a_report_of_100_classes_and_15_models_stays_readable(large, tmp_path):
    results = _without_figures(large)
    text = render_markdown(results)
    found = tables(text)
    assert max(len(row) for table in found for row in table) <= MAX_TABLE_COLUMNS
    table1 = found[0]
    assert table1[0][3] == "Top-5 accuracy (%)" and len(table1) == 1 + 15 + 1  # the models and the ensemble teacher
    small = large["models"]["small_cnn"]
    assert table1[1][3] == f"{100 * small['test_top5_accuracy']:.2f} ± {100 * small['test_top5_accuracy_std']:.2f}"
    # Table 2: one table per model (a class per row), the superclass beside each class.
    per_model = [table for table in found if table[0] == ["Class", "Superclass", "Precision", "Recall", "F1"]]
    assert len(per_model) == 15 and all(len(table) == 1 + 100 for table in per_model)
    # The most-confused pairs of every model, where its 100 x 100 matrix has no counts to read.
    confused = [table for table in found if table[0][:3] == ["Rank", "True class", "Predicted as"]]
    assert len(confused) == 15 and all(len(table) == 1 + 20 for table in confused)
    matrix = small["confusion_matrix"]
    first = confused[0][1]
    names = large["study"]["class_names"]
    true, predicted = names.index(first[1]), names.index(first[2])
    assert int(first[3]) == max(c for i, row in enumerate(matrix) for j, c in enumerate(row) if i != j)
    assert int(first[3]) == matrix[true][predicted] and first[5] == "yes"
    # Per superclass: 20 rows and the overall one; every model a column (16 columns in all).
    superclass = next(table for table in found if table[0][0] == "Superclass")
    assert len(superclass) == 1 + 1 + 20 and len(superclass[0]) == 16
    entry = small["superclass_accuracy"]["superclass_03"]
    row = next(row for row in superclass if row[0] == "superclass_03")
    assert row[1] == f"{100 * entry['accuracy']:.1f}\u00a0/\u00a0{100 * entry['fine_accuracy']:.1f}"
    # Each student's method and aggregation, the default one included.
    assert "Teachers: resnet50 and vgg16; method: kd · mean_logits." in text
    assert "| KD from ResNet50 + VGG16 | kd · mean_logits |" in text
    # In HTML the per-model parts open on demand: Table 2's 15 tables and the 15 models' sections.
    page = _page(results, tmp_path)
    assert page.tags.count("details") == 30
    assert "Small CNN (" in page.summaries and "Shuffled teacher (control) (" in page.summaries


def test_a_model_section_collapses_only_beyond_six_models():
    results = generated_results(num_classes=20, groups=0)  # 20 classes: nothing collapses for their number
    results["models"] = {key: results["models"][key] for key in list(results["models"])[:6]}
    results.pop("distillation")
    assert not any(block.collapsed for block in render_blocks(results))
    results["models"]["extra"] = {**results["models"]["small_cnn"], "title": "Extra"}
    collapsed = [block.markdown.split("\n")[0] for block in render_blocks(results) if block.collapsed]
    assert "## Small CNN (`small_cnn`)" in collapsed and "### Extra (`extra`)" in collapsed


def test_per_class_csv_holds_every_number_of_every_seed(tmp_path):
    results = _without_figures(STORED)
    write_report(tmp_path, results)
    assert (tmp_path / REPORT_MD).is_file()
    rows = list(csv.DictReader(io.StringIO((tmp_path / PER_CLASS_CSV).read_text())))
    models, seeds, classes = len(STORED["models"]), len(STORED["study"]["seeds"]), len(STORED["study"]["class_names"])
    assert len(rows) == models * (1 + seeds) * classes
    row = next(r for r in rows if r["model"] == "kd_ensemble" and r["seed"] == "1" and r["class"] == "deer")
    expected = STORED["models"]["kd_ensemble"]["seeds"][1]["per_class"]["deer"]
    assert float(row["precision"]) == expected["precision"] and int(row["support"]) == expected["support"]
    mean = next(r for r in rows if r["model"] == "small_cnn" and r["seed"] == "mean" and r["class"] == "dog")
    assert float(mean["recall"]) == STORED["models"]["small_cnn"]["per_class"]["dog"]["recall"]


def test_the_calibration_bullet_names_both_models_with_the_seeds_spread_or_an_interval():
    text = render_markdown(_without_figures(STORED))
    bullet = next(line for line in text.split("\n") if line.startswith("- Fine-tuned VGG16 vs Fine-tuned ResNet50"))
    assert "ECE 1.67% vs 11.00%, difference -9.34 points; per seed -6.85, -11.83" in bullet
    assert bullet.endswith("Fine-tuned VGG16 is better calibrated than Fine-tuned ResNet50 in every seed.")
    results = _without_figures(STORED)
    results["comparisons"][3]["ece_diff_ci95"] = [-0.4, 0.2]
    text = render_markdown(results)
    assert "difference -9.34 points, 95% CI over seeds [-40.00, 20.00]" in text


def test_words_not_python():
    results = _without_figures(STORED)
    results["study"]["kd"]["scale_by_t2"] = True
    results["study"]["device"] = None
    text = render_markdown(results)
    assert "soft term scaled by T^2: yes." in text and "**device:** unknown" in text
    assert not re.search(r"\b(True|False|None)\b", text)


def test_a_schema_2_student_takes_its_method_from_the_distillation_table():
    results = generated_results(num_classes=10, groups=0)
    for model in results["models"].values():
        model.pop("method")
    text = render_markdown(results)
    assert "Teachers: resnet50; method: dkd · mean_logits (warmup_epochs=5)." in text
