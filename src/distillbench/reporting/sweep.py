"""A sweep's report, from ``sweep.json`` only: each model's selected setting with its test accuracy,
a heatmap of mean validation accuracy per pair of numeric axes (the selected cell outlined), and
each model's settings ranked on validation accuracy."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np

from distillbench.atomic import write_bytes
from distillbench.reporting.figures import FIGURES_DIR, sweep_heatmap
from distillbench.reporting.html import write_pages
from distillbench.reporting.text import data_warnings, escape_markdown, interval_text, markdown_table, plus_minus

SWEEP_MD = "sweep.md"
SWEEP_HTML = "sweep.html"


def _is_numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def heatmap_grids(results: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """Per pair of numeric axes (or the one numeric axis), ``key``'s mean validation accuracy on
    their grid, the best over the other axes where there are more, and the selected cell."""
    axes = results["axes"]
    numeric = [axis for axis, values in axes.items() if _is_numeric(values) and len(values) > 1]
    pairs = list(itertools.combinations(numeric, 2)) or [(None, axis) for axis in numeric]
    selected = (results["models"][key]["selected"] or {}).get("values")
    grids = []
    for rows, columns in pairs:
        row_values = axes[rows] if rows is not None else [""]
        grid = np.full((len(row_values), len(axes[columns])), np.nan)
        for point in results["points"]:
            entry = point["models"].get(key)
            if not entry or not entry["complete"]:
                continue
            i = row_values.index(point["values"][rows]) if rows is not None else 0
            j = axes[columns].index(point["values"][columns])
            grid[i, j] = np.fmax(grid[i, j], entry["mean_val_accuracy"])
        cell = None
        if selected is not None:
            cell = (row_values.index(selected[rows]) if rows is not None else 0, axes[columns].index(selected[columns]))
        others = [axis for axis in axes if axis not in (rows, columns)]
        grids.append(
            {
                "rows": rows,
                "columns": columns,
                "row_values": row_values,
                "grid": grid,
                "selected": cell,
                "others": others,
            }
        )
    return grids


def heatmap_name(key: str, grid: dict[str, Any]) -> str:
    return _slug(f"sweep-{key}-{grid['rows'] or 'row'}-{grid['columns']}") + ".png"


def write_sweep_figures(root: Path, results: dict[str, Any]) -> None:
    folder = Path(root) / FIGURES_DIR
    seeds = len(results["seeds"])
    for key, model in results["models"].items():
        if not model["varies"]:
            continue
        for grid in heatmap_grids(results, key):
            over = f"; best over {', '.join(grid['others'])}" if grid["others"] else ""
            title = f"{key}: mean validation accuracy over {seeds} seed(s){over}\n(red: the selected point)"
            png = sweep_heatmap(
                grid["grid"],
                grid["row_values"],
                results["axes"][grid["columns"]],
                grid["rows"] or "",
                grid["columns"],
                grid["selected"],
                title,
            )
            write_bytes(folder / heatmap_name(key, grid), png)


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{axis}={value}" for axis, value in values.items())


def _selected_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for key, model in results["models"].items():
        chosen = model["selected"]
        if chosen is None:
            rows.append([f"`{key}`", "none yet", "-", "-", "-", model.get("waiting") or "no setting finished"])
            continue
        test = chosen["test_accuracy"]
        setting = _values_text(chosen["values"]) if model["varies"] else "(not changed by the axes)"
        rows.append(
            [
                f"`{key}`",
                setting,
                plus_minus(chosen["mean_val_accuracy"], None),
                plus_minus(test["mean"], test["std"]),
                interval_text(test["ci95"], bounds=(0.0, 1.0)),
                chosen["why"],
            ]
        )
    header = ["model", "selected setting", "mean val acc (%)", "test acc (%)", "test 95% CI (seeds)", "why"]
    return [markdown_table(header, rows, "llrrrl"), ""]


def _model_section(results: dict[str, Any], key: str) -> list[str]:
    model = results["models"][key]
    out = [f"## `{key}`", ""]
    for grid in heatmap_grids(results, key):
        out += [f"![{key} validation accuracy heatmap]({FIGURES_DIR}/{heatmap_name(key, grid)})", ""]
    rows = []
    for rank, setting in enumerate(model["ranking"], 1):
        points = setting["points"]
        label = points[0] if len(points) == 1 else f"{points[0]} (same runs as {len(points) - 1} other point(s))"
        selected = model["selected"] is not None and points[0] == model["selected"]["point"]
        if setting["complete"]:
            rank_text, accuracy = str(rank), plus_minus(setting["mean_val_accuracy"], setting["val_accuracy_std"])
        else:
            rank_text, accuracy = "-", "unfinished"
        rows.append([rank_text, f"**{label}** (selected)" if selected else label, accuracy])
    out += [markdown_table(["rank", "point", "mean val acc (%) ± std over seeds"], rows, "rlr"), ""]
    return out


def render_sweep_markdown(results: dict[str, Any]) -> str:
    """sweep.md from sweep.json; every string that came from a config or the data is escaped."""
    results = escape_markdown(results)
    out = [f"# distillbench sweep: {results['name']}", ""]
    out += [*data_warnings(results), ""] if data_warnings(results) else []
    axes = [[f"`{axis}`", ", ".join(str(v) for v in values)] for axis, values in results["axes"].items()]
    out += [
        f"{len(results['points'])} grid points x {len(results['seeds'])} seeds ({', '.join(map(str, results['seeds']))}),"
        f" executor `{results['executor']}`. Each point is a study in `points/<point>/`; runs that several points"
        " need (a teacher does not depend on `kd.*`) were trained once.",
        "",
        markdown_table(["axis", "values"], axes, "ll"),
        "",
        f"**Selection.** {results['selection_rule']} Validation accuracy is that of the weights each run kept (its"
        " best epoch on validation loss), on the study's held-out validation split.",
        "",
        "## Selected settings",
        "",
        *_selected_table(results),
    ]
    for key, model in results["models"].items():
        if model["varies"]:
            out += _model_section(results, key)
    return "\n".join(out)


def write_sweep_report(root: Path, results: dict[str, Any]) -> None:
    """Figures first, then ``sweep.md`` that links them and ``sweep.html`` that embeds them."""
    root = Path(root)
    write_sweep_figures(root, results)
    write_pages(root, render_sweep_markdown(results), SWEEP_MD, SWEEP_HTML, f"distillbench sweep: {results['name']}")
