"""Markdown text that the study report and the sweep report both write: literal escaping of what
came from a config or the data, tables (never wider than ``MAX_TABLE_COLUMNS``: a wider one is split),
numbers with their spread or interval, settings in words rather than Python's (``yes``, not
``True``), and the warnings a reader must see first (generated data, random backbone weights)."""

from __future__ import annotations

import re
from typing import Any

# What would let a title or a class name make Markdown of its own: a link or an image ("](", or "]["
# and "]:" for references), a code span, a table cell, a backslash escape. Raw HTML and autolinks are
# never rendered (html.markdown_to_html); an interval such as [0.1, 0.3] stays as it is.
_MARKDOWN_SYNTAX = re.compile(r"[\\`|]|\](?=[(\[:])")

# The widest table a report writes: a wider one cannot be read on a page, in Markdown or in HTML.
MAX_TABLE_COLUMNS = 16


def escape_markdown(value: Any) -> Any:
    """``value`` with every string in it (keys included) shown literally in Markdown: its syntax
    backslash-escaped, line breaks made spaces. Model keys are safe identifiers and stay as they
    are, so figure file names still match."""
    if isinstance(value, str):
        return _MARKDOWN_SYNTAX.sub(lambda match: "\\" + match.group(0), " ".join(value.splitlines()))
    if isinstance(value, dict):
        return {escape_markdown(key): escape_markdown(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_markdown(item) for item in value]
    return value


def markdown_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A Markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default: the first
    column left, the others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def split_table(header: list[str], rows: list[list[str]], keep: int = 1, align: str | None = None) -> list[str]:
    """``header`` and ``rows`` as one Markdown table, or as several (a blank line between them) that
    each repeat the first ``keep`` columns, when the whole would be wider than ``MAX_TABLE_COLUMNS``."""
    width = MAX_TABLE_COLUMNS - keep
    align = align or "l" * keep + "r" * (len(header) - keep)
    tables: list[str] = []
    for start in range(keep, max(len(header), keep + 1), width):
        columns = [*range(keep), *range(start, min(start + width, len(header)))]
        tables += [
            markdown_table(
                [header[c] for c in columns],
                [[row[c] for c in columns] for row in rows],
                "".join(align[c] for c in columns),
            ),
            "",
        ]
    return tables[:-1]


def yes_no(value: Any) -> str:
    """A setting that is on or off, in words."""
    return "yes" if value else "no"


def shown(value: Any, missing: str = "unknown") -> str:
    """A value from results.json as text; ``missing`` for what it does not record (null)."""
    return missing if value is None else str(value)


def listed(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def plus_minus(mean: float, std: float | None, scale: float = 100, digits: int = 2) -> str:
    """``mean ± std`` (scaled), or just the mean for one seed."""
    text = f"{scale * mean:.{digits}f}"
    return text if std is None else f"{text} ± {scale * std:.{digits}f}"


def interval_text(
    ci: list[float] | None, scale: float = 100, digits: int = 2, bounds: tuple[float, float] | None = None
) -> str:
    """``[low, high]``, scaled; ``bounds`` clips an interval that runs past what is possible (an
    accuracy's t interval over two seeds easily exceeds 100%)."""
    if ci is None:
        return "-"
    low, high = ci if bounds is None else (max(ci[0], bounds[0]), min(ci[1], bounds[1]))
    return f"[{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def image_size(efficiency: dict[str, Any]) -> str:
    """``HxW`` of the images a model's efficiency was measured on (``image_size``: schema 2 before
    ``image_shape`` was recorded, square images)."""
    if "image_shape" in efficiency:
        return "{1}x{2}".format(*efficiency["image_shape"])
    return f"{efficiency['image_size']}x{efficiency['image_size']}"


def data_warnings(study: dict[str, Any]) -> list[str]:
    """Block quotes for what makes the numbers no results: generated data, random backbone weights."""
    notes = []
    if study.get("synthetic_data"):
        notes.append(
            "> **GENERATED DATA.** These numbers come from generated images, not from a real dataset "
            f"({study.get('data_source')}). They test the pipeline; they are not results."
        )
    for arch, source in (study.get("weights") or {}).items():
        if source and source.startswith("RANDOM"):
            notes.append(
                f"> **RANDOM BACKBONE WEIGHTS for {arch}** (`weights.{arch}: none`): this is a smoke test, "
                "not fine-tuning of an ImageNet model."
            )
    return notes
