"""``report.md``: the seed paper's tables and figures for this run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from distillbench.atomic import write_bytes
from distillbench.reporting import figures
from distillbench.reporting.html import write_pages

REPORT_MD, REPORT_HTML, FIGURES_DIR = "report.md", "report.html", "figures"  # inside a study directory


def image_size(efficiency: dict[str, Any]) -> str:
    """``HxW`` of the images a model's efficiency was measured on (``image_size``: schema 2 before
    ``image_shape`` was recorded, square images)."""
    if "image_shape" in efficiency:
        return "{1}x{2}".format(*efficiency["image_shape"])
    return f"{efficiency['image_size']}x{efficiency['image_size']}"


def model_keys(results: dict[str, Any]) -> list[str]:
    return list(results["models"])


def figure_paths(key: str) -> dict[str, str]:
    """Figure file names of one model, relative to ``figures/``."""
    return {kind: f"{key}_{kind}.png" for kind in ("confusion", "loss", "per_class", "reliability")}


def figures_drawn(results: dict[str, Any]) -> bool:
    """Whether the study draws its figures (``evaluation.figures``; results.json written before it existed: yes)."""
    return bool((results["study"].get("evaluation") or {}).get("figures", True))


def write_figures(root: Path, results: dict[str, Any]) -> None:
    folder = Path(root) / FIGURES_DIR
    keys = model_keys(results)
    if not keys or not figures_drawn(results):
        return
    study = results["study"]
    reference = {f"{name} teacher": [s["test_accuracy"] for s in t["seeds"]] for name, t in results["teachers"].items()}
    titles = [results["models"][k]["title"] for k in keys]
    per_seed = [[s["test_accuracy"] for s in results["models"][k]["seeds"]] for k in keys]
    num_classes = len(study["class_names"])
    write_bytes(folder / "accuracy.png", figures.accuracy_bars(titles, per_seed, reference, num_classes))
    costed = [k for k in keys if results["models"][k].get("efficiency")]
    if costed:
        write_bytes(folder / "accuracy_vs_cost.png", figures.accuracy_vs_cost(
            [results["models"][k]["title"] for k in costed],
            [results["models"][k]["test_accuracy"] for k in costed],
            [results["models"][k]["test_accuracy_std"] or 0.0 for k in costed],
            [results["models"][k]["efficiency"]["macs"] for k in costed],
            [results["models"][k]["efficiency"]["params"] for k in costed],
            image_size(results["models"][costed[0]]["efficiency"]),
        ))  # fmt: skip
    methods = [m for m in results.get("distillation") or [] if "vs_scratch" in m]
    if methods:
        write_bytes(folder / "distillation_forest.png", figures.difference_forest(
            [f"{m['title']} ({m['method']})" for m in methods],
            [m["vs_scratch"]["accuracy_diff"] for m in methods],
            [m["vs_scratch"]["ci95_seeds"] for m in methods],
            [m["vs_scratch"]["ci95_images"] for m in methods],
            results["models"][results["study"]["evaluation"]["scratch"]]["title"],
        ))  # fmt: skip
    class_names = study["class_names"]
    for key in keys:
        r, names = results["models"][key], figure_paths(key)
        seeds = [s["seed"] for s in r["seeds"]]
        pooled = f", {len(seeds)} seeds pooled" if len(seeds) > 1 else ""
        write_bytes(
            folder / names["confusion"],
            figures.confusion(r["confusion_matrix"], class_names, f"{r['title']} (test{pooled})"),
        )
        write_bytes(folder / names["loss"], figures.loss_curves(
            {s["seed"]: s["history"] for s in r["seeds"]}, {s["seed"]: s["best_epoch"] for s in r["seeds"]}, r["title"],
            distilled=bool(r["teachers"]),
        ))  # fmt: skip
        write_bytes(
            folder / names["per_class"], figures.per_class_accuracy(r["per_class"], r["test_accuracy"], r["title"])
        )
        mean_ece = (
            f"; mean of the {len(seeds)} seeds' ECE {100 * r['calibration']['ece']:.2f}%" if len(seeds) > 1 else ""
        )
        write_bytes(folder / names["reliability"], figures.reliability_diagram(
            r["reliability"], r["title"], f" ({len(seeds)} seeds pooled{mean_ece})" if len(seeds) > 1 else "",
        ))  # fmt: skip


def markdown_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


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


def data_warnings(study: dict[str, Any]) -> list[str]:
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


def _setup(study: dict[str, Any], recipes: list[str]) -> list[str]:
    train, kd, seeds = study.get("train") or {}, study.get("kd") or {}, study.get("seeds") or []
    evaluation = study.get("evaluation") or {}
    return [
        f"- **Data:** {study.get('data_source')}",
        f"- **Seeds:** {', '.join(map(str, seeds))} (every model trained once per seed; a KD student of seed s "
        f"distils its teachers of seed s) · **device:** {study.get('device')} · **numerics:** "
        f"{study.get('precision')} autocast{', channels-last' if study.get('channels_last') else ''}",
        *[f"- **{arch} weights:** {source}" for arch, source in (study.get("weights") or {}).items()],
        f"- **Training:** Adam, batch {train.get('batch_size')}, up to {train.get('epochs')} epochs, "
        + _augmentation_words(train.get("augment", "none"))
        + (
            f"early stopping on validation loss (patience {train['patience']}), best weights restored."
            if train.get("patience")
            else "no early stopping, weights of the best validation epoch restored."
        ),
        *recipes,
        f"- **Distillation:** T = {kd.get('temperature')}, alpha = {kd.get('alpha')}, "
        f"soft term scaled by T^2: {kd.get('scale_by_t2')}.",
        f"- **Statistics:** mean ± sample std over seeds, 95% Student-t interval of the mean; paired "
        f"comparisons by the Student-t interval of the per-seed differences, a percentile bootstrap "
        f"({evaluation.get('bootstrap_resamples')} resamples of the test images) of the accuracy "
        f"difference and McNemar's exact test per seed; ECE over {evaluation.get('ece_bins')} equal-width "
        "confidence bins.",
        "",
    ]


def _recipe_lines(results: dict[str, Any]) -> list[str]:
    """One line per model whose training departs from the study's line above it (Adam, constant
    rate, the study's epochs, batch size and augmentation, the data's size, no layer of a backbone
    trained); none for a paper study."""
    train = results["study"].get("train") or {}
    usual = {"optimizer": "adam", "weight_decay": 0.0, "schedule": "constant", "label_smoothing": 0.0,
             "input_size": None, "trainable_layers": 0, "augment": train.get("augment", "none"),
             "epochs": train.get("epochs"), "batch_size": train.get("batch_size")}  # fmt: skip
    lines = []
    for key in model_keys(results):
        entry = results["models"][key]
        recipe = entry.get("recipe")
        if not recipe or all(recipe.get(k) == v for k, v in usual.items()):
            continue
        optimizer = recipe["optimizer"] + (" (Nesterov)" if recipe["optimizer"] == "sgd" and recipe["nesterov"] else "")
        schedule = {"constant": "constant", "one_cycle": "one-cycle"}.get(recipe["schedule"], "cosine")
        if recipe["schedule"] == "cosine" and recipe["warmup_epochs"]:
            schedule += f" after {recipe['warmup_epochs']:g} warm-up epoch(s)"
        size = f"{recipe['input_size']} px" if recipe["input_size"] else "the data's size"
        online = " Its teachers ran online on its augmented batches (each at its own input size)." if recipe[
            "teachers_online"] else ""  # fmt: skip
        lines.append(
            f"  - {entry['title']}: {optimizer}, lr {recipe['lr']:g} ({schedule}), weight decay "
            f"{recipe['weight_decay']:g}, label smoothing {recipe['label_smoothing']:g}, {recipe['epochs']} epochs of "
            f"batch {recipe['batch_size']}, trainable layers {recipe['trainable_layers']}, input {size} "
            f"({recipe['input_norm']} normalisation), augmentation {recipe['augment']}.{online}"
        )
    return ["- **Per-model training** (models that differ from the line above):", *lines] if lines else []


def _augmentation_words(augment: str) -> str:
    if augment == "none":
        return "no augmentation (as in the paper), "
    if augment == "crop_flip":
        return "augmented by random 4-pixel shifts and horizontal flips (not in the paper), "
    return f"augmentation {augment!r} (not in the paper), "


def _accuracy_section(results: dict[str, Any], keys: list[str]) -> list[str]:
    rows = [
        [
            r["title"],
            plus_minus(r["test_accuracy"], r["test_accuracy_std"]),
            interval_text(r["test_accuracy_ci95"], bounds=(0, 1)),
            ", ".join(f"{100 * s['test_accuracy']:.2f}" for s in r["seeds"]),
            ", ".join(f"{s['epochs_trained']} ({s['best_epoch']})" for s in r["seeds"]),
            f"{r['train_seconds']:.1f}",
            f"{r['params']:,} ({r['trainable_params']:,})",
        ]
        for r in (results["models"][k] for k in keys)
    ]
    for name, teacher in results["teachers"].items():
        rows.append([
            f"*{name} teacher ({' + '.join(teacher['members'])}, mean logits)*",
            plus_minus(teacher["test_accuracy"], teacher["test_accuracy_std"]),
            interval_text(teacher["test_accuracy_ci95"], bounds=(0, 1)),
            ", ".join(f"{100 * s['test_accuracy']:.2f}" for s in teacher["seeds"]),
            "-", "-", "-",
        ])  # fmt: skip
    header = [
        "Model",
        "Test accuracy (%)",
        "95% CI (clipped to 0-100)",
        "Per seed",
        "Epochs (best)",
        "Train time (s, mean)",
        "Params (trainable)",
    ]
    return [
        "## Table 1: test accuracy",
        "",
        markdown_table(header, rows),
        "",
        "![Overall test accuracy](figures/accuracy.png)",
        "",
    ]


def _comparisons_section(results: dict[str, Any]) -> list[str]:
    comparisons = results.get("comparisons") or []
    if not comparisons:
        return []
    titles = {k: results["models"][k]["title"] for k in model_keys(results)}
    rows = [
        [
            c["claim"],
            f"{titles[c['a']]} − {titles[c['b']]}",
            f"{100 * c['accuracy_diff']:+.2f}",
            interval_text(c["ci95_seeds"]),
            interval_text(c["ci95_images"]),
            ", ".join(f"{p:.2g}" for p in c["mcnemar_p"]),
            f"**{c['outcome']}**",
        ]
        for c in comparisons
    ]
    return [
        "## The paper's conclusions, tested",
        "",
        "Each conclusion of the seed paper is worded as the paper's positive claim, *a is more accurate "
        "than b*, and tested on the same test images. Two sources of chance are checked: training "
        "randomness (the 95% Student-t interval of the mean difference over seeds: initialisation, "
        "dropout, batch order) and the finite test set (a paired bootstrap over test images). The claim "
        "is *supported* when both intervals lie above 0, *contradicted* when both lie below, and "
        "otherwise our data cannot tell the two models apart (*inconclusive*). McNemar's exact test is "
        "given per seed. (The authors' notebook differs from the paper's text in ways that matter for "
        "these claims; the README's section on the notebook lists them.)",
        "",
        markdown_table(
            [
                "Paper's claim",
                "a − b",
                "Difference (points)",
                "95% CI over seeds",
                "95% CI over test images",
                "McNemar p per seed",
                "Our data",
            ],
            rows,
            "llrrrrl",
        ),  # fmt: skip
        "",
        *[f"- {c['verdict']}" for c in comparisons],
        "",
    ]


def _distillation_section(results: dict[str, Any]) -> list[str]:
    methods = results.get("distillation")
    if not methods:
        return []

    def versus(row: dict[str, Any], name: str) -> list[str]:
        c = row.get(name)
        if c is None:
            return ["", "", ""]
        return [f"{100 * c['accuracy_diff']:+.2f}", f"{interval_text(c['ci95_seeds'])} / {interval_text(c['ci95_images'])}",
                c["outcome"]]  # fmt: skip

    rows = [
        [row["title"], row["method"], plus_minus(row["test_accuracy"], row["test_accuracy_std"]), *versus(row, "vs_scratch"),
         *versus(row, "vs_kd"), f"{100 * row['ece']:.2f}",
         "" if row["teacher_agreement"] is None else f"{100 * row['teacher_agreement']:.1f}"]
        for row in methods
    ]  # fmt: skip
    scratch = results["study"]["evaluation"]["scratch"]
    reference = results["study"]["evaluation"]["kd_reference"]
    titles = {k: results["models"][k]["title"] for k in (scratch, reference) if k in results["models"]}
    return [
        "## Which distillation works here",
        "",
        f"Every student against the model trained from scratch ({titles.get(scratch, scratch)}) and against plain "
        f"KD ({titles.get(reference, reference)}): same teachers, same seeds, same test images, sorted by accuracy. "
        "Differences in points, with the 95% intervals over seeds / over test images; a difference is "
        "*supported* when both intervals exclude 0 on its side (see the conclusions section). Label "
        "smoothing and the shuffled teacher are controls: a method that does not beat them gains from "
        "regularisation, not from the teacher's knowledge of the image.",
        "",
        markdown_table(
            [
                "Student",
                "Method",
                "Accuracy (%)",
                "vs scratch",
                "95% CI seeds / images",
                "",
                "vs KD",
                "95% CI seeds / images",
                "",
                "ECE (%)",
                "Agreement with teacher (%)",
            ],
            rows,
            "llrrrlrrlrr",
        ),  # fmt: skip
        "",
        "![Differences from the model trained from scratch](figures/distillation_forest.png)",
        "",
    ]


def _per_class_section(results: dict[str, Any], keys: list[str], class_names: list[str]) -> list[str]:
    header = ["Class"] + [f"{results['models'][k]['title']} {m}" for k in keys for m in ("P", "R", "F1", "Acc")]
    rows = [
        [name]
        + [
            value
            for k in keys
            for value in (
                f"{results['models'][k]['per_class'][name]['precision']:.2f}",
                f"{results['models'][k]['per_class'][name]['recall']:.2f}",
                f"{results['models'][k]['per_class'][name]['f1']:.2f}",
                f"{100 * results['models'][k]['per_class'][name]['accuracy']:.1f}",
            )
        ]
        for name in class_names
    ]
    seeds = len(results["models"][keys[0]]["seeds"])
    return [
        "## Table 2: per-class precision, recall, F1 and accuracy (%)",
        "",
        "Every per-class number comes from the saved test predictions"
        + (f", averaged over {seeds} seeds" if seeds > 1 else "")
        + ". Per-class accuracy is correct / support of the class, which is by definition the class's recall.",
        "",
        markdown_table(header, rows),
        "",
    ]


def _calibration_section(results: dict[str, Any], keys: list[str]) -> list[str]:
    def row(title: str, calibration: dict[str, Any], agreement: str) -> list[str]:
        return [
            title,
            plus_minus(calibration["ece"], calibration["ece_std"]),
            plus_minus(calibration["nll"], calibration["nll_std"], scale=1, digits=3),
            plus_minus(calibration["brier"], calibration["brier_std"], scale=1, digits=3),
            agreement,
        ]

    rows = [
        row(
            results["models"][k]["title"],
            results["models"][k]["calibration"],
            f"{100 * results['models'][k]['teacher_agreement']:.1f}"
            if "teacher_agreement" in results["models"][k]
            else "-",
        )  # fmt: skip
        for k in keys
    ]
    rows += [row(f"*{name} teacher*", t["calibration"], "-") for name, t in results["teachers"].items()]
    titles = {k: results["models"][k]["title"] for k in keys}
    kd_lines = [
        f"- {titles[c['a']]} − {titles[c['b']]}: ECE difference {100 * c['ece_diff']:+.2f} points "
        f"({'better' if c['ece_diff'] < 0 else 'worse'} calibrated on average over seeds)."
        for c in results.get("comparisons") or []
    ]
    return [
        "## Table 3: calibration",
        "",
        "ECE: top-1 expected calibration error (%), equal-width confidence bins, weighted by bin size. "
        "NLL: mean negative log-likelihood of the true class. Brier: squared error between the probability "
        "vector and the one-hot label, summed over classes (0 best, 2 worst). Agreement: top-1 agreement "
        "of a student with its (seed-matched) teacher, %.",
        "",
        markdown_table(["Model", "ECE (%)", "NLL", "Brier", "Agreement with teacher (%)"], rows),
        "",
        *(
            ["The paper says distillation gives better calibration; what our runs show:", "", *kd_lines, ""]
            if kd_lines
            else []
        ),
    ]


def _efficiency_section(results: dict[str, Any], keys: list[str]) -> list[str]:
    costed = [k for k in keys if results["models"][k].get("efficiency")]
    if not costed:
        return []
    rows = []
    for key in costed:
        e = results["models"][key]["efficiency"]
        rows.append([
            results["models"][key]["title"], f"{e['params']:,}", f"{e['trainable_params']:,}", f"{e['macs'] / 1e6:,.1f}",
            f"{e['checkpoint_bytes'] / 2**20:,.1f}", f"{e['latency_ms_batch1']:.2f}", f"{e['images_per_s_batch256']:,.0f}",
        ])  # fmt: skip
    threads = results["models"][costed[0]]["efficiency"].get("cpu_threads")
    size = image_size(results["models"][costed[0]]["efficiency"])
    return [
        "## Table 4: efficiency",
        "",
        f"MACs: multiply-accumulates per {size} image (convolutions and matrix products, counted by "
        f"`torch.utils.flop_counter`). Latency and throughput: CPU, {threads} threads, fp32, median over "
        "seeds.",
        "",
        markdown_table(
            [
                "Model",
                "Params",
                "Trainable",
                "MMACs / image",
                "Checkpoint (MiB)",
                "Latency, batch 1 (ms)",
                "Throughput, batch 256 (img/s)",
            ],
            rows,
        ),  # fmt: skip
        "",
        "![Accuracy vs cost](figures/accuracy_vs_cost.png)",
        "",
    ]


# What would let a title or a class name make Markdown of its own: a link or an image ("](", or "]["
# and "]:" for references), a code span, a table cell, a backslash escape. Raw HTML and autolinks are
# never rendered (html.markdown_to_html); an interval such as [0.1, 0.3] stays as it is.
_MARKDOWN_SYNTAX = re.compile(r"[\\`|]|\](?=[(\[:])")


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


def render_markdown(results: dict[str, Any]) -> str:
    """report.md from results.json; every string that came from a config or the data is escaped."""
    results = escape_markdown(results)
    study, keys = results["study"], model_keys(results)
    out = [f"# distillbench study: {study.get('name')}", ""]
    out += [*data_warnings(study), ""] if data_warnings(study) else []
    out += _setup(study, _recipe_lines(results))
    if study.get("stale_runs"):
        out += [
            f"> **Stale runs, not shown:** {'; '.join(study['stale_runs'])}. Each was trained for another "
            "configuration or from other teachers than this study's config.yaml, or its files were damaged (each "
            "says which). Run `distillbench run --config OUT/config.yaml --out OUT`, OUT being this directory, "
            "to retrain them.",
            "",
        ]
    if study.get("unfinished_runs"):
        out += [f"> Not finished yet: {', '.join(study['unfinished_runs'])}. Run the study again to complete it.", ""]
    if not keys:
        return "\n".join(out + ["No model has finished yet."]) + "\n"
    out += _accuracy_section(results, keys)
    out += _comparisons_section(results)
    out += _distillation_section(results)
    out += _per_class_section(results, keys, study["class_names"])
    out += _calibration_section(results, keys)
    out += _efficiency_section(results, keys)
    if not figures_drawn(results):
        out += ["Figures were not drawn (`evaluation.figures: false`).", ""]
    for key in keys:
        r, names = results["models"][key], figure_paths(key)
        teachers = f" Teachers: {', '.join(r['teachers'])}." if r["teachers"] else ""
        seeds = r["seeds"]
        trained = (
            f"after {seeds[0]['epochs_trained']} epochs (weights of epoch {seeds[0]['best_epoch']} restored)"
            if len(seeds) == 1
            else f"over {len(seeds)} seeds; figures pool the seeds' test predictions"
        )
        out += [
            f"## {r['title']} (`{key}`)",
            "",
            f"Test accuracy {plus_minus(r['test_accuracy'], r['test_accuracy_std'])}% {trained}.{teachers}",
            "",
            # Alt texts name the key, a safe identifier: a title could hold brackets.
            f"![{key} confusion matrix](figures/{names['confusion']})",
            f"![{key} loss curves](figures/{names['loss']})",
            f"![{key} per-class accuracy](figures/{names['per_class']})",
            f"![{key} reliability diagram](figures/{names['reliability']})",
            "",
        ]
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
