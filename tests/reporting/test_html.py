"""report.html embeds every figure it shows and needs nothing else."""

import base64
from pathlib import Path

from distillbench.reporting.html import render_html
from distillbench.reporting.sweep import render_sweep_markdown
from distillbench.reporting.text import escape_markdown

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_figures_are_embedded_and_tables_rendered(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a b.png").write_bytes(PNG)
    page = render_html("# T\n\n| x | y |\n| --- | ---: |\n| 1 | 2 |\n\n![fig](figures/a b.png)\n", tmp_path, "T & co")
    assert "<title>T &amp; co</title>" in page
    assert "<table>" in page and "<td>1</td>" in page
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in page
    assert "figures/" not in page


def test_raw_html_and_links_in_the_markdown_stay_text(tmp_path):
    page = render_html(
        "# <script>alert(1)</script>\n\n<div onclick=x>d</div> [a](javascript:alert(2))\n", tmp_path, "T"
    )
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<div" not in page and 'href="javascript:' in page  # the Markdown itself is ours: escaped at its source
    assert "[a](javascript:alert(2))" in render_html(escape_markdown("[a](javascript:alert(2))"), tmp_path, "T")


def test_the_sweep_report_warns_and_escapes_like_a_studys():
    results = {
        "name": "tiny",
        "axes": {"zoo.kd.distill.method": ["kd", "<b>x</b> [l](javascript:y)"]},
        "seeds": [0],
        "executor": "local",
        "selection_rule": "Best.",
        "points": [],
        "synthetic_data": True,
        "data_source": "GENERATED data",
        "weights": {"resnet50": "RANDOM init (weights: none)"},
        "models": {"kd": {"varies": False, "selected": None, "waiting": "1 of 2 settings unfinished", "ranking": []}},
    }
    text = render_sweep_markdown(results)
    assert "**GENERATED DATA.**" in text and "**RANDOM BACKBONE WEIGHTS for resnet50**" in text
    assert "[l\\](javascript:y)" in text
    page = render_html(text, Path("."), "T")
    assert "<b>" not in page and "[l](javascript:y)" in page and "<a " not in page
