"""``report.html``: the Markdown report as one self-contained page (figures embedded, no network).

Nothing from a config or a dataset becomes markup: the Markdown is written with those strings escaped
(``text.escape_markdown``), and raw HTML in it is rendered as text.

A report is a sequence of ``Block``s. In Markdown they are simply one after another; in HTML a
collapsed block (a model's section when there are many models, a long table) is a ``<details>``
element whose summary is the block's heading, so that a report of 15 models and 100 classes opens
on its overview. Figures are shown at their own size, never wider than the page.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import markdown

from distillbench.atomic import write_text

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1440px; margin: 2em auto;
       padding: 0 1em; color: #222; }
p, ul, ol, blockquote { max-width: 1180px; }
h1, h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f3f3f3; cursor: pointer; position: sticky; top: 0; }
th[data-order="asc"]::after { content: " ▲"; } th[data-order="desc"]::after { content: " ▼"; }
tr:nth-child(even) td { background: #fafafa; }
blockquote { border-left: 4px solid #d33; margin: 1em 0; padding: .2em 1em; background: #fff4f4; }
img { display: block; max-width: 100%; margin: .5em 0; }
details { margin: .6em 0; }
details > summary { cursor: pointer; }
details > summary > h2, details > summary > h3 { display: inline; border: none; }
details[open] > summary { margin-bottom: .5em; }
"""

# Click a column header to sort by it (numbers numerically: the first number in the cell).
SORT_SCRIPT = """
document.querySelectorAll("table").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.title = "click to sort";
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var order = th.dataset.order === "asc" ? "desc" : "asc";
      table.querySelectorAll("th").forEach(function (other) { delete other.dataset.order; });
      th.dataset.order = order;
      var key = function (row) {
        var text = row.cells[column].textContent.trim(), number = parseFloat(text.replace(/,/g, "").replace("−", "-"));
        return isNaN(number) ? text.toLowerCase() : number;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), result = x < y ? -1 : x > y ? 1 : 0;
        return order === "asc" ? result : -result;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


@dataclass(frozen=True)
class Block:
    """A part of a report: its Markdown, and whether the HTML page shows it collapsed (its first
    line is then a heading, which becomes the summary that opens it)."""

    markdown: str
    collapsed: bool = False


def join_blocks(blocks: Sequence[Block]) -> str:
    """The Markdown of a report made of ``blocks``."""
    return "\n".join(block.markdown.rstrip("\n") + "\n" for block in blocks)


_IMAGE_SOURCE = re.compile(r'src="([^"]+\.png)"')


def _embed_images(page: str, root: Path) -> str:
    """Every ``<img src="figures/x.png">`` becomes a data: URI of that file."""

    def data_uri(match: re.Match[str]) -> str:
        payload = base64.b64encode((root / html.unescape(match.group(1))).read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{payload}"'

    return _IMAGE_SOURCE.sub(data_uri, page)


def markdown_to_html(markdown_text: str) -> str:
    """Markdown (with tables) as HTML, raw HTML in it shown as text: a title or a class name from a
    config or a dataset can never become markup or script in the page."""
    converter = markdown.Markdown(extensions=["tables"], output_format="html")
    converter.preprocessors.deregister("html_block")
    for pattern in ("html", "autolink", "automail"):  # <tag ...>, <http://...>, <name@host>: text
        converter.inlinePatterns.deregister(pattern)
    return converter.convert(markdown_text)


def _block_html(block: Block) -> str:
    if not block.collapsed:
        return markdown_to_html(block.markdown)
    heading, _, rest = block.markdown.lstrip("\n").partition("\n")
    if not heading.startswith("#"):
        raise ValueError(f"a collapsed block starts with its heading, not {heading!r}")
    return f"<details>\n<summary>{markdown_to_html(heading)}</summary>\n{markdown_to_html(rest)}\n</details>"


def render_html(report: str | Sequence[Block], root: Path, title: str) -> str:
    """The report page (Markdown, or blocks some of which collapse); figures are read from ``root``
    and embedded."""
    blocks = [Block(report)] if isinstance(report, str) else report
    body = "\n".join(_block_html(block) for block in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"{_embed_images(body, Path(root))}\n<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n"
    )


def write_pages(root: Path, report: str | Sequence[Block], markdown_name: str, html_name: str, title: str) -> None:
    """A report as ``markdown_name`` (linking its figures) and ``html_name`` (one page, figures embedded)."""
    markdown_text = report if isinstance(report, str) else join_blocks(report)
    write_text(Path(root) / markdown_name, markdown_text)
    write_text(Path(root) / html_name, render_html(report, root, title))
