"""report.html embeds every figure it shows and needs nothing else."""

import base64

from distillbench.reporting.html import render_html

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
