"""The report's "Published vs reproduced" section, from each model's ``reproduction`` in results.json
(``study.results.reproduction``): per model, the number each way of choosing the epoch gives, and
each published number tested against ours chosen the way its source chose (TOST,
``evaluation.equivalence``).

Shown only when some model has a ``reproduction`` block: the study lists ``published`` rows or
tracks test accuracy per epoch (``train.test_every_epoch``). Takes results.json with its strings
already escaped (``text.escape_markdown``), as every section does; a source's name is shortened in the
table and given whole below it. Accuracies in results.json are fractions, shown as percentages."""

from __future__ import annotations

from typing import Any

from distillbench.reporting.study_figures import single_labels
from distillbench.reporting.text import interval_text, markdown_table

# The number a published row's selection is compared with, in the table's words.
_CHOICE_WORDS = {
    "last_epoch": "last epoch",
    "best_epoch_on_test": "best epoch on test",
    "validation_selected": "validation-selected",
    "checkpoint": "released checkpoint",
}
_SELECTION_WORDS = {"best_epoch": "best epoch", "last_epoch": "last epoch", "unknown": "unknown"}
_SOURCE_CHARACTERS = 28  # a source's name in the table; the whole is listed below it


def _ours(summary: dict[str, Any] | None) -> str:
    """Mean with its 95% interval over seeds (clipped to 0-100, as Table 1's), as percentages; ``-``
    where the runs do not have it."""
    if summary is None:
        return "-"
    text = f"{100 * summary['mean']:.2f}"
    return text if summary["ci95"] is None else f"{text} {interval_text(summary['ci95'], bounds=(0, 1))}"


def _gap(summary: dict[str, Any] | None) -> str:
    """Best-minus-last in points, with its 95% interval over seeds."""
    if summary is None:
        return "-"
    text = f"{100 * summary['mean']:+.2f}"
    return text if summary["ci95"] is None else f"{text} {interval_text(summary['ci95'])}"


def short_source(source: str) -> str:
    """A source's name for the table: up to its first comma, semicolon or opening parenthesis
    ("CRD (Tian et al., ICLR 2020) Table 1; ..." -> "CRD"), at most ``_SOURCE_CHARACTERS`` characters
    cut at a word; an escape is never cut in half."""
    short = source.replace(";", ",").replace("(", ",").split(",")[0].strip() or source.strip()
    if len(short) > _SOURCE_CHARACTERS:
        cut = short[:_SOURCE_CHARACTERS]
        short = (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip("\\ ") + "…"
    return short


def _headline(block: dict[str, Any]) -> dict[str, Any] | None:
    """The number a row without a published value is summarised by: the last epoch, else the
    validation-selected one, else a released checkpoint's."""
    return block.get("last_epoch") or block.get("validation_selected") or block.get("checkpoint")


def _rows(label: str, block: dict[str, Any], sources: dict[str, int]) -> tuple[list[list[str]], list[str]]:
    """One table row per published number of a model (one row without a number when it has none), and
    a sentence per published number."""
    if block.get("released"):
        checkpoint = block.get("checkpoint")
        last = f"{100 * checkpoint['mean']:.2f} (released checkpoint)" if checkpoint else "-"
    else:
        last = _ours(block.get("last_epoch"))
    ours = [last, _ours(block.get("best_epoch_on_test")), _ours(block.get("validation_selected"))]
    gap = _gap(block.get("best_minus_last"))
    if not block["published"]:
        headline = _headline(block) or {}
        seeds = str(headline.get("n", "-"))
        resolve = headline.get("seeds_to_resolve")
        return [[label, "-", "-", "-", *ours, seeds, "-", "-", gap, str(resolve) if resolve else "-"]], []
    rows, sentences = [], []
    for row in block["published"]:
        number = sources.setdefault(row["source"], len(sources) + 1)
        compared = _CHOICE_WORDS.get(row["compared"], row["compared"])
        seeds = str(row["n"]) if "n" in row else "-"
        resolve = row.get("seeds_to_resolve")
        rows.append(
            [
                label,
                f"{100 * row['published_accuracy']:.2f}",
                f"{short_source(row['source'])} [{number}]",
                _SELECTION_WORDS.get(row["selection"], row["selection"]),
                *ours,
                seeds,
                compared,
                f"**{row['verdict']}**",
                gap,
                str(resolve) if resolve else "-",
            ]
        )
        sentences.append(_sentence(label, row, number, compared))
    return rows, sentences


def _sentence(label: str, row: dict[str, Any], number: int, compared: str) -> str:
    """What one test found, in a sentence: the published and our number, the interval TOST read, why."""
    published = f"{100 * row['published_accuracy']:.2f}% [{number}]"
    if "mean" not in row:
        return f"- {label} vs {published}: **{row['verdict']}**: {row['why']}."
    spread = (
        f", 90% CI {interval_text(row['ci90'])}"
        if row.get("ci90") is not None and row["ci90"][0] != row["ci90"][1]
        else ""
    )
    seeds = f"{row['n']} seed{'s' if row['n'] != 1 else ''}"
    return (
        f"- {label} vs {published} ({row['compared_why']}): **{row['verdict']}**. Ours ({compared}, {seeds}) "
        f"{100 * row['mean']:.2f}%{spread}, {100 * row['difference']:+.2f} points from the published number "
        f"(margin ±{100 * row['margin']:.2g}): {row['why']}."
    )


def published_section(results: dict[str, Any]) -> list[str]:
    """The section, or nothing when no model has a ``reproduction`` block."""
    blocks = {key: model["reproduction"] for key, model in results["models"].items() if model.get("reproduction")}
    if not blocks:
        return []
    labels = single_labels({key: model["title"] for key, model in results["models"].items()})
    evaluation = results["study"].get("evaluation") or {}
    margin = evaluation.get("equivalence_margin", 0.5)
    resolvable = evaluation.get("resolvable_difference", 0.3)
    sources: dict[str, int] = {}
    rows, sentences = [], []
    for key, block in blocks.items():
        more_rows, more_sentences = _rows(labels[key], block, sources)
        rows += more_rows
        sentences += more_sentences
    header = [
        "Model",
        "Published (%)",
        "Source",
        "Selection",
        "Ours: last epoch (%)",
        "Ours: best epoch on test (%, optimistic)",
        "Ours: validation-selected (%)",
        "Seeds",
        "Compared with",
        "Verdict",
        "Best − last (points)",
        f"Seeds to resolve {resolvable:g} points",
    ]
    published = {row["source"]: row for block in blocks.values() for row in block["published"]}
    listed_sources = [
        f"[{number}] {source}" + (f" ({published[source]['runs']})" if published[source].get("runs") else "")
        for source, number in sources.items()
    ]
    return [
        "## Published vs reproduced",
        "",
        "Our numbers, each the mean over seeds with its 95% Student-t interval (clipped to 0-100): **last epoch**, the weights "
        "after the final epoch (no choice made); **best epoch on test**, the highest test accuracy over the "
        "epochs (`train.test_every_epoch`): the epoch is chosen on the test set itself, so it is optimistic and "
        "never a result to claim; **validation-selected**, the weights of the best validation epoch, the study's "
        "own number (Table 1) when it has a validation split. A released checkpoint, loaded and not trained, has "
        "one number, its test accuracy (in the last-epoch column). **Best − last** is what choosing the epoch on "
        "test adds.",
        "",
        "The literature's numbers are not comparable as printed: mdistiller (the DKD code) reports the best test "
        "accuracy over epochs, averaged over runs; RepDistiller (the CRD code) reports the last epoch; and the KD "
        "baselines in the DKD paper are copied from the CRD paper, so they carry CRD's choice, not DKD's. Each "
        "published number is therefore compared with ours chosen the way its source chose (*Compared with*); a "
        "source that does not say is compared with our last epoch, which looks at no test data.",
        "",
        f"Verdict, by two one-sided t-tests (TOST) with a margin of ±{margin:g} points: **reproduced** when both "
        f"reject at 5% (the mean is above published − {margin:g} and below published + {margin:g}: the 90% "
        "interval lies within the margin); otherwise **below** or **above** when the 95% interval lies entirely "
        "below or above the published number; otherwise **inconclusive** (always with one seed, which measures "
        "no spread between runs). A released checkpoint's number does not vary by seed and is compared exactly. "
        f"*Seeds to resolve*: the seeds a two-sided t-test at 5% needs to detect a {resolvable:g}-point "
        "difference with 80% power at the observed per-seed spread (of the compared number).",
        "",
        markdown_table(header, rows, "llllrrrrllrr"),
        "",
        *sentences,
        *([""] if sentences else []),
        *([f"Sources: {'; '.join(listed_sources)}.", ""] if listed_sources else []),
    ]
