"""A study's report from its ``results.json`` only: the figures, ``report.md`` (the seed paper's
tables and figures for this study, one section after another) and ``report.html`` (the same page,
figures embedded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillbench.reporting.html import write_pages
from distillbench.reporting.sections import (
    accuracy_section,
    calibration_section,
    comparisons_section,
    distillation_section,
    efficiency_section,
    missing_runs_section,
    model_section,
    per_class_section,
    setup_section,
)
from distillbench.reporting.study_figures import figures_drawn, write_figures
from distillbench.reporting.text import data_warnings, escape_markdown

REPORT_MD, REPORT_HTML = "report.md", "report.html"  # inside a study directory


def render_markdown(results: dict[str, Any]) -> str:
    """report.md from results.json; every string that came from a config or the data is escaped."""
    results = escape_markdown(results)
    study = results["study"]
    out = [f"# distillbench study: {study.get('name')}", ""]
    warnings = data_warnings(study)
    out += [*warnings, ""] if warnings else []
    out += setup_section(results)
    out += missing_runs_section(results)
    if not results["models"]:
        return "\n".join(out + ["No model has finished yet."]) + "\n"
    out += accuracy_section(results)
    out += comparisons_section(results)
    out += distillation_section(results)
    out += per_class_section(results)
    out += calibration_section(results)
    out += efficiency_section(results)
    if not figures_drawn(results):
        out += ["Figures were not drawn (`evaluation.figures: false`).", ""]
    for key in results["models"]:
        out += model_section(results, key)
    if not figures_drawn(results):
        out = [line for line in out if not line.startswith("![")]
    return "\n".join(out)


def write_report(root: Path, results: dict[str, Any]) -> None:
    """Figures first, then ``report.md`` that links them and ``report.html`` that embeds them."""
    root = Path(root)
    write_figures(root, results)
    write_pages(
        root, render_markdown(results), REPORT_MD, REPORT_HTML, f"distillbench study: {results['study'].get('name')}"
    )
