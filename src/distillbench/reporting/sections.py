"""The sections of a study's ``report.md``, in the order the report shows them. Each takes
``results.json`` with its strings already escaped (``text.escape_markdown``) and returns its
Markdown lines, none when results.json has nothing for it."""

from __future__ import annotations

from typing import Any

from distillbench.reporting.recipes import training_lines
from distillbench.reporting.study_figures import figure_paths
from distillbench.reporting.text import image_size, interval_text, markdown_table, plus_minus


def setup_section(results: dict[str, Any]) -> list[str]:
    """The data, seeds, device and numerics, backbone weights, training recipes, distillation
    settings and statistics: what a reader needs before the numbers."""
    study = results["study"]
    kd, seeds, evaluation = study.get("kd") or {}, study.get("seeds") or [], study.get("evaluation") or {}
    return [
        f"- **Data:** {study.get('data_source')}",
        f"- **Seeds:** {', '.join(map(str, seeds))} (every model trained once per seed; a KD student of seed s "
        f"distils its teachers of seed s) · **device:** {study.get('device')} · **numerics:** "
        f"{study.get('precision')} autocast{', channels-last' if study.get('channels_last') else ''}",
        *[f"- **{arch} weights:** {source}" for arch, source in (study.get("weights") or {}).items()],
        *training_lines(results),
        f"- **Distillation:** T = {kd.get('temperature')}, alpha = {kd.get('alpha')}, "
        f"soft term scaled by T^2: {kd.get('scale_by_t2')}.",
        f"- **Statistics:** mean ± sample std over seeds, 95% Student-t interval of the mean; paired "
        f"comparisons by the Student-t interval of the per-seed differences, a percentile bootstrap "
        f"({evaluation.get('bootstrap_resamples')} resamples of the test images) of the accuracy "
        f"difference and McNemar's exact test per seed; ECE over {evaluation.get('ece_bins')} equal-width "
        "confidence bins.",
        "",
    ]


def missing_runs_section(results: dict[str, Any]) -> list[str]:
    """The runs the report leaves out: stale ones (and how to retrain them), unfinished ones."""
    study, out = results["study"], []
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
    return out


def accuracy_section(results: dict[str, Any]) -> list[str]:
    """Table 1: every model's and every ensemble teacher's test accuracy over seeds."""
    rows = [
        [
            model["title"],
            plus_minus(model["test_accuracy"], model["test_accuracy_std"]),
            interval_text(model["test_accuracy_ci95"], bounds=(0, 1)),
            ", ".join(f"{100 * s['test_accuracy']:.2f}" for s in model["seeds"]),
            ", ".join(f"{s['epochs_trained']} ({s['best_epoch']})" for s in model["seeds"]),
            f"{model['train_seconds']:.1f}",
            f"{model['params']:,} ({model['trainable_params']:,})",
        ]
        for model in results["models"].values()
    ]
    for name, teacher in results["teachers"].items():
        rows.append(
            [
                f"*{name} teacher ({' + '.join(teacher['members'])}, mean logits)*",
                plus_minus(teacher["test_accuracy"], teacher["test_accuracy_std"]),
                interval_text(teacher["test_accuracy_ci95"], bounds=(0, 1)),
                ", ".join(f"{100 * s['test_accuracy']:.2f}" for s in teacher["seeds"]),
                *["-"] * 3,
            ]
        )
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


def comparisons_section(results: dict[str, Any]) -> list[str]:
    """The seed paper's conclusions, each tested as a paired comparison."""
    comparisons = results.get("comparisons") or []
    if not comparisons:
        return []
    titles = {key: model["title"] for key, model in results["models"].items()}
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
    header = [
        "Paper's claim",
        "a − b",
        "Difference (points)",
        "95% CI over seeds",
        "95% CI over test images",
        "McNemar p per seed",
        "Our data",
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
        markdown_table(header, rows, "llrrrrl"),
        "",
        *[f"- {c['verdict']}" for c in comparisons],
        "",
    ]


def _versus(row: dict[str, Any], name: str) -> list[str]:
    """A distillation row's difference from ``name`` (vs_scratch, vs_kd): points, intervals, outcome."""
    comparison = row.get(name)
    if comparison is None:
        return ["", "", ""]
    intervals = f"{interval_text(comparison['ci95_seeds'])} / {interval_text(comparison['ci95_images'])}"
    return [f"{100 * comparison['accuracy_diff']:+.2f}", intervals, comparison["outcome"]]


def distillation_section(results: dict[str, Any]) -> list[str]:
    """Every distillation method against the model trained from scratch and against plain KD."""
    methods = results.get("distillation")
    if not methods:
        return []
    rows = [
        [
            row["title"],
            row["method"],
            plus_minus(row["test_accuracy"], row["test_accuracy_std"]),
            *_versus(row, "vs_scratch"),
            *_versus(row, "vs_kd"),
            f"{100 * row['ece']:.2f}",
            "" if row["teacher_agreement"] is None else f"{100 * row['teacher_agreement']:.1f}",
        ]
        for row in methods
    ]
    header = [
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
    ]
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
        markdown_table(header, rows, "llrrrlrrlrr"),
        "",
        "![Differences from the model trained from scratch](figures/distillation_forest.png)",
        "",
    ]


def per_class_section(results: dict[str, Any]) -> list[str]:
    """Table 2: precision, recall, F1 and accuracy per class and model."""
    models = list(results["models"].values())
    header = ["Class"] + [f"{model['title']} {m}" for model in models for m in ("P", "R", "F1", "Acc")]
    rows = []
    for name in results["study"]["class_names"]:
        row = [name]
        for model in models:
            metrics = model["per_class"][name]
            row += [
                f"{metrics['precision']:.2f}",
                f"{metrics['recall']:.2f}",
                f"{metrics['f1']:.2f}",
                f"{100 * metrics['accuracy']:.1f}",
            ]
        rows.append(row)
    seeds = len(models[0]["seeds"])
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


def _calibration_row(title: str, calibration: dict[str, Any], agreement: str) -> list[str]:
    return [
        title,
        plus_minus(calibration["ece"], calibration["ece_std"]),
        plus_minus(calibration["nll"], calibration["nll_std"], scale=1, digits=3),
        plus_minus(calibration["brier"], calibration["brier_std"], scale=1, digits=3),
        agreement,
    ]


def calibration_section(results: dict[str, Any]) -> list[str]:
    """Table 3: ECE, NLL, Brier score and agreement with the teacher; what distillation did to ECE."""
    rows = []
    for model in results["models"].values():
        agreement = f"{100 * model['teacher_agreement']:.1f}" if "teacher_agreement" in model else "-"
        rows.append(_calibration_row(model["title"], model["calibration"], agreement))
    rows += [_calibration_row(f"*{name} teacher*", t["calibration"], "-") for name, t in results["teachers"].items()]
    titles = {key: model["title"] for key, model in results["models"].items()}
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


def efficiency_section(results: dict[str, Any]) -> list[str]:
    """Table 4: parameters, MACs, checkpoint size, CPU latency and throughput, when measured."""
    costed = [model for model in results["models"].values() if model.get("efficiency")]
    if not costed:
        return []
    rows = []
    for model in costed:
        e = model["efficiency"]
        rows.append(
            [
                model["title"],
                f"{e['params']:,}",
                f"{e['trainable_params']:,}",
                f"{e['macs'] / 1e6:,.1f}",
                f"{e['checkpoint_bytes'] / 2**20:,.1f}",
                f"{e['latency_ms_batch1']:.2f}",
                f"{e['images_per_s_batch256']:,.0f}",
            ]
        )
    header = [
        "Model",
        "Params",
        "Trainable",
        "MMACs / image",
        "Checkpoint (MiB)",
        "Latency, batch 1 (ms)",
        "Throughput, batch 256 (img/s)",
    ]
    threads = costed[0]["efficiency"].get("cpu_threads")
    return [
        "## Table 4: efficiency",
        "",
        f"MACs: multiply-accumulates per {image_size(costed[0]['efficiency'])} image (convolutions and matrix "
        f"products, counted by `torch.utils.flop_counter`). Latency and throughput: CPU, {threads} threads, fp32, "
        "median over seeds.",
        "",
        markdown_table(header, rows),
        "",
        "![Accuracy vs cost](figures/accuracy_vs_cost.png)",
        "",
    ]


def model_section(results: dict[str, Any], key: str) -> list[str]:
    """One model: its accuracy, how long it trained, its teachers, and its four figures."""
    model, names = results["models"][key], figure_paths(key)
    teachers = f" Teachers: {', '.join(model['teachers'])}." if model["teachers"] else ""
    seeds = model["seeds"]
    trained = (
        f"after {seeds[0]['epochs_trained']} epochs (weights of epoch {seeds[0]['best_epoch']} restored)"
        if len(seeds) == 1
        else f"over {len(seeds)} seeds; figures pool the seeds' test predictions"
    )
    return [
        f"## {model['title']} (`{key}`)",
        "",
        f"Test accuracy {plus_minus(model['test_accuracy'], model['test_accuracy_std'])}% {trained}.{teachers}",
        "",
        # Alt texts name the key, a safe identifier: a title could hold brackets.
        f"![{key} confusion matrix](figures/{names['confusion']})",
        f"![{key} loss curves](figures/{names['loss']})",
        f"![{key} per-class accuracy](figures/{names['per_class']})",
        f"![{key} reliability diagram](figures/{names['reliability']})",
        "",
    ]
