"""A study's report from its ``results.json`` only: the figures, ``report.md`` (the seed paper's
tables and figures for this study, one section after another), ``report.html`` (the same page,
figures embedded, the long parts collapsed when there are many models or classes) and
``per_class.csv`` (every per-class number, which Table 2 summarises)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillbench.atomic import write_text
from distillbench.reporting.class_sections import PER_CLASS_CSV, per_class_blocks, per_class_csv, superclass_section
from distillbench.reporting.html import Block, join_blocks, write_pages
from distillbench.reporting.published import published_section
from distillbench.reporting.sections import (
    accuracy_section,
    calibration_section,
    comparisons_section,
    distillation_section,
    efficiency_section,
    missing_runs_section,
    model_section,
    setup_section,
)
from distillbench.reporting.study_figures import figures_drawn, write_figures
from distillbench.reporting.text import data_warnings, escape_markdown

REPORT_MD, REPORT_HTML = "report.md", "report.html"  # inside a study directory


def _block(lines: list[str]) -> list[Block]:
    return [Block("\n".join(lines))] if lines else []


def render_blocks(results: dict[str, Any]) -> list[Block]:
    """The report's blocks, from results.json; every string that came from a config or the data is escaped."""
    results = escape_markdown(results)
    study = results["study"]
    out = [f"# distillbench study: {study.get('name')}", ""]
    warnings = data_warnings(study)
    out += [*warnings, ""] if warnings else []
    out += setup_section(results)
    out += missing_runs_section(results)
    if not results["models"]:
        return [Block("\n".join(out + ["No model has finished yet."]))]
    blocks = [Block("\n".join(out))]
    for section in (accuracy_section, published_section, comparisons_section, distillation_section):
        blocks += _block(section(results))
    blocks += per_class_blocks(results)
    blocks += _block(superclass_section(results))
    blocks += _block(calibration_section(results))
    blocks += _block(efficiency_section(results))
    if not figures_drawn(results):
        blocks += [Block("Figures were not drawn (`evaluation.figures: false`).\n")]
    blocks += [model_section(results, key) for key in results["models"]]
    if not figures_drawn(results):
        blocks = [Block(_without_images(block.markdown), block.collapsed) for block in blocks]
    return blocks


def _without_images(markdown_text: str) -> str:
    """``markdown_text`` without its image lines, and without the blank lines that leaves doubled."""
    kept: list[str] = []
    for line in markdown_text.split("\n"):
        if line.startswith("![") or (not line and kept and not kept[-1]):
            continue
        kept.append(line)
    return "\n".join(kept)


def render_markdown(results: dict[str, Any]) -> str:
    """report.md from results.json."""
    return join_blocks(render_blocks(results))


def write_report(root: Path, results: dict[str, Any]) -> None:
    """Figures first, then ``per_class.csv``, ``report.md`` that links the figures and ``report.html``
    that embeds them."""
    root = Path(root)
    write_figures(root, results)
    if results["models"]:
        write_text(root / PER_CLASS_CSV, per_class_csv(results))
    write_pages(
        root, render_blocks(results), REPORT_MD, REPORT_HTML, f"distillbench study: {results['study'].get('name')}"
    )
