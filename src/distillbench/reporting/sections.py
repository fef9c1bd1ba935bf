"""The sections of a study's ``report.md``, in the order the report shows them. Each takes
``results.json`` with its strings already escaped (``text.escape_markdown``) and returns its
Markdown lines, none when results.json has nothing for it (a model's section: a ``Block``, collapsed
in HTML when there are many models). Settings are said in words (``yes``, not ``True``). The
sections that grow with the number of classes are in ``class_sections``.

results.json of schema 2 (before top-5, superclasses and each student's ``method``) still reads: what
it lacks is not said."""

from __future__ import annotations

from typing import Any

from distillbench.reporting.class_sections import COLLAPSE_ABOVE_MODELS, most_confused_lines
from distillbench.reporting.html import Block
from distillbench.reporting.recipes import training_lines
from distillbench.reporting.study_figures import figure_paths, num_classes, single_labels
from distillbench.reporting.text import image_size, interval_text, listed, markdown_table, plus_minus, shown, yes_no


def student_method(results: dict[str, Any], key: str) -> str | None:
    """A student's distillation method in words (``kd · mean_logits``): its ``method`` (schema 3),
    else its row of the ``distillation`` section; None for a model without teachers."""
    model = results["models"][key]
    if model.get("method"):
        return model["method"]
    if not model["teachers"]:
        return None
    return next((row["method"] for row in results.get("distillation") or [] if row["model"] == key), None)


def _methods_words(results: dict[str, Any]) -> str:
    """What the setup's Distillation line says of the students' methods."""
    methods = {key: student_method(results, key) for key in results["models"] if results["models"][key]["teachers"]}
    said = set(methods.values())
    if not said or said == {None}:
        return ""
    if len(said) == 1:
        return f" Every student: {said.pop()}."
    return " Each student's method is in its section below."


def setup_section(results: dict[str, Any]) -> list[str]:
    """The data, seeds, device and numerics, backbone weights, training recipes, distillation
    settings and statistics: what a reader needs before the numbers."""
    study = results["study"]
    kd, seeds, evaluation = study.get("kd") or {}, study.get("seeds") or [], study.get("evaluation") or {}
    superclasses = study.get("superclasses")
    groups = f", in {len(superclasses)} superclasses" if superclasses else ""
    return [
        f"- **Data:** {shown(study.get('data_source'))} · {num_classes(results)} classes{groups}",
        f"- **Seeds:** {', '.join(map(str, seeds))} (every model trained once per seed; a KD student of seed s "
        f"distils its teachers of seed s) · **device:** {shown(study.get('device'))} · **numerics:** "
        f"{shown(study.get('precision'))} autocast{', channels-last' if study.get('channels_last') else ''}",
        *[f"- **{arch} weights:** {source}" for arch, source in (study.get("weights") or {}).items()],
        *training_lines(results),
        f"- **Distillation:** T = {shown(kd.get('temperature'))}, alpha = {shown(kd.get('alpha'))}, "
        f"soft term scaled by T^2: {yes_no(kd.get('scale_by_t2'))}.{_methods_words(results)}",
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


def _epochs(seed: dict[str, Any]) -> str:
    """A Table 1 row's epochs of one seed: trained (kept), or that a released checkpoint was loaded."""
    if not seed.get("history") and not seed.get("epochs_trained"):
        return "loaded"
    return f"{seed['epochs_trained']} ({seed['best_epoch']})"


def _top5(entry: dict[str, Any]) -> list[str]:
    """A Table 1 row's top-5 cell: mean ± std over seeds, ``-`` where results.json has none."""
    if entry.get("test_top5_accuracy") is None:
        return ["-"]
    return [plus_minus(entry["test_top5_accuracy"], entry.get("test_top5_accuracy_std"))]


def accuracy_section(results: dict[str, Any]) -> list[str]:
    """Table 1: every model's and every ensemble teacher's test accuracy over seeds, and its top-5
    accuracy when the study has more than 5 classes."""
    entries = [*results["models"].values(), *results["teachers"].values()]
    top5 = any(entry.get("test_top5_accuracy") is not None for entry in entries)
    rows = [
        [
            model["title"],
            plus_minus(model["test_accuracy"], model["test_accuracy_std"]),
            interval_text(model["test_accuracy_ci95"], bounds=(0, 1)),
            *(_top5(model) if top5 else []),
            ", ".join(f"{100 * s['test_accuracy']:.2f}" for s in model["seeds"]),
            ", ".join(_epochs(s) for s in model["seeds"]),
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
                *(_top5(teacher) if top5 else []),
                ", ".join(f"{100 * s['test_accuracy']:.2f}" for s in teacher["seeds"]),
                *["-"] * 3,
            ]
        )
    header = [
        "Model",
        "Test accuracy (%)",
        "95% CI (clipped to 0-100)",
        *(["Top-5 accuracy (%)"] if top5 else []),
        "Per seed",
        "Epochs (best)",
        "Train time (s, mean)",
        "Params (trainable)",
    ]
    chance = f"Chance is {100 / num_classes(results):.3g}% ({num_classes(results)} classes)."
    if results["study"].get("val_size") == 0:
        chance += (
            " No validation split (`data.val_size: 0`): every number is the last epoch's, and Epochs (best) "
            "names the last epoch twice."
        )
    top5_words = (
        " Top-5: the share of test images whose class is among the model's five highest scores." if top5 else ""
    )
    return [
        "## Table 1: test accuracy",
        "",
        f"Mean ± sample std over seeds, with the 95% interval of the mean. {chance}{top5_words}",
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
    labels = single_labels({key: model["title"] for key, model in results["models"].items()})
    rows = [
        [
            labels.get(row["model"], row["title"]),
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
    if scratch == "auto" or reference == "auto":
        against = (
            "Every student against the model of its own architecture trained from scratch and against plain KD "
            "of its own architecture and teachers"
        )
    else:
        against = (
            f"Every student against the model trained from scratch ({titles.get(scratch, scratch)}) and against "
            f"plain KD ({titles.get(reference, reference)})"
        )
    return [
        "## Which distillation works here",
        "",
        f"{against}: same teachers, same seeds, same test images, sorted by accuracy. "
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


def _calibration_row(title: str, calibration: dict[str, Any], agreement: str) -> list[str]:
    return [
        title,
        plus_minus(calibration["ece"], calibration["ece_std"]),
        plus_minus(calibration["nll"], calibration["nll_std"], scale=1, digits=3),
        plus_minus(calibration["brier"], calibration["brier_std"], scale=1, digits=3),
        agreement,
    ]


def _calibration_bullet(results: dict[str, Any], comparison: dict[str, Any]) -> str:
    """What one comparison's two models' ECEs say: both ECEs, their difference with its 95% interval
    over seeds (when results.json has one, ``ece_diff_ci95``) or its spread over seeds, and which
    model is better calibrated."""
    a, b = results["models"][comparison["a"]], results["models"][comparison["b"]]
    diff = comparison["ece_diff"]
    ece = {
        key: {s["seed"]: s["calibration"]["ece"] for s in results["models"][key]["seeds"]}
        for key in (comparison["a"], comparison["b"])
    }
    per_seed = [
        ece[comparison["a"]][seed] - ece[comparison["b"]][seed]
        for seed in comparison.get("seeds") or []
        if seed in ece[comparison["a"]] and seed in ece[comparison["b"]]
    ]
    if comparison.get("ece_diff_ci95") is not None:
        spread = f", 95% CI over seeds {interval_text(comparison['ece_diff_ci95'])}"
    elif len(per_seed) > 1:
        spread = f"; per seed {', '.join(f'{100 * d:+.2f}' for d in per_seed)}"
    else:
        spread = " (one seed: no spread over seeds)"
    if diff == 0:
        verdict = "the two are equally calibrated"
    else:
        better, worse = (a, b) if diff < 0 else (b, a)
        if len(per_seed) < 2:
            how = ""
        elif all((d < 0) == (diff < 0) and d != 0 for d in per_seed):
            how = " in every seed"
        else:
            how = " on average, not in every seed"
        verdict = f"{better['title']} is better calibrated than {worse['title']}{how}"
    return (
        f"- {a['title']} vs {b['title']}: ECE {100 * a['calibration']['ece']:.2f}% vs "
        f"{100 * b['calibration']['ece']:.2f}%, difference {100 * diff:+.2f} points{spread}: {verdict}."
    )


def calibration_section(results: dict[str, Any]) -> list[str]:
    """Table 3: ECE, NLL, Brier score and agreement with the teacher; what distillation did to ECE."""
    rows = []
    for model in results["models"].values():
        agreement = f"{100 * model['teacher_agreement']:.1f}" if "teacher_agreement" in model else "-"
        rows.append(_calibration_row(model["title"], model["calibration"], agreement))
    rows += [_calibration_row(f"*{name} teacher*", t["calibration"], "-") for name, t in results["teachers"].items()]
    kd_lines = [_calibration_bullet(results, c) for c in results.get("comparisons") or []]
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


def _timing(efficiency: dict[str, Any], name: str, form: str) -> str:
    """A timing's median, and its 10th-90th percentile range when measured (newer records)."""
    text = form.format(efficiency[name])
    spread = efficiency.get(f"{name}_spread")
    return f"{text} ({form.format(spread[0])}-{form.format(spread[1])})" if spread else text


def efficiency_section(results: dict[str, Any]) -> list[str]:
    """Table 4: parameters, MACs, checkpoint size, CPU latency and throughput, when measured."""
    costed_keys = [key for key, model in results["models"].items() if model.get("efficiency")]
    costed = [results["models"][key] for key in costed_keys]
    if not costed:
        return []
    rows = []
    for key, model in zip(costed_keys, costed):
        e = model["efficiency"]
        shared = e.get("timed_with") not in (None, key)  # another model's measurement of the same structure
        rows.append(
            [
                model["title"],
                f"{e['params']:,}",
                f"{e['trainable_params']:,}",
                f"{e['macs'] / 1e6:,.1f}",
                f"{e['checkpoint_bytes'] / 2**20:,.1f}",
                _timing(e, "latency_ms_batch1", "{:.2f}") + (" *" if shared else ""),
                _timing(e, "images_per_s_batch256", "{:,.0f}"),
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
    busy = [model["title"] for model in costed if model["efficiency"].get("timing_busy")]
    warning = (
        [
            f"> **The machine was busy while timing** {listed(busy)}: the repeated timings spread by more than half "
            "their median, so the latency and throughput above are unreliable. Time again on an idle machine "
            "(`distillbench report` keeps them; remove `efficiency` from the runs' records, or run a fresh study).",
            "",
        ]
        if busy
        else []
    )
    return [
        "## Table 4: efficiency",
        "",
        f"MACs: multiply-accumulates per {image_size(costed[0]['efficiency'])} image (convolutions and matrix "
        f"products, counted by `torch.utils.flop_counter`). Latency and throughput: CPU, {threads} threads, fp32; "
        "each distinct architecture and input size is timed once (identical models share the measurement, marked *), "
        "the models' repeats interleaved, as the median with the 10th-90th percentile range in brackets.",
        "",
        *warning,
        markdown_table(header, rows),
        "",
        "![Accuracy vs cost](figures/accuracy_vs_cost.png)",
        "",
    ]


def _accuracy_words(model: dict[str, Any]) -> str:
    """A model's test accuracy, with its top-5 and superclass accuracy when it has them."""
    extra = []
    if model.get("test_top5_accuracy") is not None:
        extra.append(f"top-5 {plus_minus(model['test_top5_accuracy'], model.get('test_top5_accuracy_std'))}%")
    if model.get("test_superclass_accuracy") is not None:
        superclass = plus_minus(model["test_superclass_accuracy"], model.get("test_superclass_accuracy_std"))
        extra.append(f"superclass {superclass}%")
    return f"{plus_minus(model['test_accuracy'], model['test_accuracy_std'])}%" + (
        f" ({', '.join(extra)})" if extra else ""
    )


def model_section(results: dict[str, Any], key: str) -> Block:
    """One model: its accuracy, how long it trained, its teachers and method, its four figures and,
    with many classes, its most-confused pairs; collapsed in HTML when there are many models."""
    model, names = results["models"][key], figure_paths(key)
    method = student_method(results, key)
    teachers = (
        f" Teachers: {listed(list(model['teachers']))}" + (f"; method: {method}." if method else ".")
        if model["teachers"]
        else ""
    )
    seeds = model["seeds"]
    if len(seeds) > 1:
        trained = f"over {len(seeds)} seeds; figures pool the seeds' test predictions"
    elif _epochs(seeds[0]) == "loaded":
        trained = "of a released checkpoint, loaded and evaluated, not trained"
    elif seeds[0].get("selected") == "last_epoch":
        trained = f"after {seeds[0]['epochs_trained']} epochs (the last epoch's weights kept: no validation split)"
    else:
        trained = f"after {seeds[0]['epochs_trained']} epochs (weights of epoch {seeds[0]['best_epoch']} restored)"
    lines = [
        f"## {model['title']} (`{key}`)",
        "",
        f"Test accuracy {_accuracy_words(model)} {trained}.{teachers}",
        "",
        # Alt texts name the key, a safe identifier: a title could hold brackets.
        f"![{key} confusion matrix](figures/{names['confusion']})",
        "",
        *most_confused_lines(results, key),
        f"![{key} loss curves](figures/{names['loss']})",
        f"![{key} per-class accuracy](figures/{names['per_class']})",
        f"![{key} reliability diagram](figures/{names['reliability']})",
        "",
    ]
    return Block("\n".join(lines), collapsed=len(results["models"]) > COLLAPSE_ABOVE_MODELS)
