"""``report.md``: the seed paper's tables and figures for this run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillbench.atomic import write_bytes, write_text
from distillbench.reporting import figures
from distillbench.study.layout import RunLayout
from distillbench.study.results import model_keys


def figure_paths(key: str) -> dict[str, str]:
    """Figure file names of one model, relative to ``figures/``."""
    return {kind: f"{key}_{kind}.png" for kind in ("confusion", "loss", "per_class")}


def write_figures(root: Path, results: dict[str, Any]) -> None:
    folder = RunLayout(root).figures
    keys = model_keys(results)
    if not keys:
        return
    reference = {f"{name} teacher": t["test_accuracy"] for name, t in results["teachers"].items()}
    titles = [results[k]["title"] for k in keys]
    write_bytes(folder / "accuracy.png", figures.accuracy_bars(titles, [results[k]["test_accuracy"] for k in keys], reference))
    class_names = results["study"]["class_names"]
    for key in keys:
        r, names = results[key], figure_paths(key)
        write_bytes(folder / names["confusion"], figures.confusion(r["confusion_matrix"], class_names, f"{r['title']} (test)"))
        write_bytes(folder / names["loss"], figures.loss_curves(r["history"], r["best_epoch"], r["title"]))
        write_bytes(folder / names["per_class"], figures.per_class_accuracy(r["per_class"], r["test_accuracy"], r["title"]))


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _warnings(study: dict[str, Any]) -> list[str]:
    notes = []
    if study.get("synthetic_data"):
        notes.append(
            "> **GENERATED DATA.** These numbers come from images generated in CIFAR-10's file format "
            "(`distillbench synth-data`), not from CIFAR-10. They test the pipeline; they are not results."
        )
    for arch, source in (study.get("weights") or {}).items():
        if source and source.startswith("RANDOM"):
            notes.append(
                f"> **RANDOM BACKBONE WEIGHTS for {arch}** (`weights.{arch}: none`): this is a smoke test, "
                "not fine-tuning of an ImageNet model."
            )
    return notes


def render_markdown(results: dict[str, Any]) -> str:
    study, keys = results["study"], model_keys(results)
    out = [f"# distillbench study: {study.get('name')}", ""]
    out += [*_warnings(study), ""] if _warnings(study) else []
    train = study.get("train") or {}
    kd = study.get("kd") or {}
    out += [
        f"- **Data:** {study.get('data_source')}",
        f"- **Seed:** {study.get('seed')} · **device:** {study.get('device')}",
        *[f"- **{arch} weights:** {source}" for arch, source in (study.get("weights") or {}).items()],
        f"- **Training:** Adam, batch {train.get('batch_size')}, up to {train.get('epochs')} epochs, "
        + (
            f"early stopping on validation loss (patience {train['patience']}), best weights restored."
            if train.get("patience")
            else "no early stopping, weights of the best validation epoch restored."
        ),
        f"- **Distillation:** T = {kd.get('temperature')}, alpha = {kd.get('alpha')}, "
        f"soft term scaled by T^2: {kd.get('scale_by_t2')}.",
        "",
    ]
    missing = [k for k in study.get("models", []) if k not in keys]
    if missing:
        out += [f"> Not finished yet: {', '.join(missing)}. Run the study again to complete it.", ""]
    if not keys:
        return "\n".join(out + ["No model has finished yet."]) + "\n"

    rows = [
        [
            results[k]["title"],
            f"{100 * results[k]['test_accuracy']:.2f}",
            f"{results[k]['epochs_trained']} ({results[k]['best_epoch']})",
            f"{results[k]['train_seconds']:.1f}",
            f"{results[k]['params']:,} ({results[k]['trainable_params']:,})",
        ]
        for k in keys
    ]
    for name, teacher in results["teachers"].items():
        rows.append([f"*{name} teacher ({' + '.join(teacher['members'])}, mean logits)*",
                     f"{100 * teacher['test_accuracy']:.2f}", "-", "-", "-"])  # fmt: skip
    out += [
        "## Table 1: test accuracy",
        "",
        _table(["Model", "Test accuracy (%)", "Epochs (best)", "Train time (s, after cached features)", "Params (trainable)"], rows),
        "",
        "![Overall test accuracy](figures/accuracy.png)",
        "",
        "## Table 2: per-class precision, recall, F1 and accuracy (%)",
        "",
        "Every per-class number comes from the same saved test predictions. Per-class accuracy is "
        "correct / support of the class, which is by definition the class's recall.",
        "",
    ]
    class_names = study["class_names"]
    header = ["Class"] + [f"{results[k]['title']} {m}" for k in keys for m in ("P", "R", "F1", "Acc")]
    rows = [
        [name]
        + [
            value
            for k in keys
            for value in (
                f"{results[k]['per_class'][name]['precision']:.2f}",
                f"{results[k]['per_class'][name]['recall']:.2f}",
                f"{results[k]['per_class'][name]['f1']:.2f}",
                f"{100 * results[k]['per_class'][name]['accuracy']:.1f}",
            )
        ]
        for name in class_names
    ]
    out += [_table(header, rows), ""]
    for key in keys:
        r, names = results[key], figure_paths(key)
        teachers = f" Teachers: {', '.join(r['teachers'])}." if r["teachers"] else ""
        out += [
            f"## {r['title']} (`{key}`)",
            "",
            f"Test accuracy {100 * r['test_accuracy']:.2f}% after {r['epochs_trained']} epochs "
            f"(weights of epoch {r['best_epoch']} restored).{teachers}",
            "",
            f"![{r['title']} confusion matrix](figures/{names['confusion']})",
            f"![{r['title']} loss curves](figures/{names['loss']})",
            f"![{r['title']} per-class accuracy](figures/{names['per_class']})",
            "",
        ]
    return "\n".join(out)


def write_report(root: Path, results: dict[str, Any]) -> None:
    """Figures first, then ``report.md`` that links them."""
    root = Path(root)
    write_figures(root, results)
    write_text(RunLayout(root).report, render_markdown(results))
