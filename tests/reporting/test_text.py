"""A table wider than a page can show is split, its first columns repeated."""

from distillbench.reporting.text import MAX_TABLE_COLUMNS, split_table


def test_a_wide_table_is_split_and_repeats_its_key_column():
    header = ["Superclass"] + [f"model {i}" for i in range(30)]
    rows = [["trees"] + [str(i) for i in range(30)]]
    text = "\n".join(split_table(header, rows))
    tables = [part for part in text.split("\n\n") if part]
    assert len(tables) == 2
    widths = [part.split("\n")[0].count(" | ") + 1 for part in tables]
    assert widths == [MAX_TABLE_COLUMNS, 1 + 30 - (MAX_TABLE_COLUMNS - 1)]
    assert all(part.split("\n")[2].startswith("| trees | ") for part in tables)
    assert tables[1].split("\n")[2] == "| trees | " + " | ".join(str(i) for i in range(15, 30)) + " |"
    assert split_table(header[:3], [row[:3] for row in rows]) == [
        "| Superclass | model 0 | model 1 |\n| :--- | ---: | ---: |\n| trees | 0 | 1 |"
    ]
