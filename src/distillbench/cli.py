"""``distillbench``: run the study, rebuild its report, make offline test data."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillbench.config import MAX_SEEDS, parse_yaml_value
from distillbench.errors import UserError, describe_os_error

if TYPE_CHECKING:
    from distillbench.config import StudyConfig

MAX_SYNTHETIC_IMAGES = 10_000_000  # 30 GB of pixels: beyond any machine's memory for the generator
SYNTH_FORMAT_NAMES = ("cifar10", "cifar100", "svhn", "imagefolder")  # data.synthetic.SYNTH_FORMATS, not imported

EPILOG = """\
examples:
  distillbench run                                     the paper's protocol, CIFAR-10 downloaded
  distillbench run --data-dir ~/data/cifar-10-batches-py --out results/paper
  distillbench run --config configs/paper.yaml --set train.epochs=5 --set models=[small_cnn,resnet50]
  distillbench run --seeds 1                           one seed per model, as the paper did (default: 3)
  distillbench report results/paper                    rebuild report + figures from saved runs
  distillbench sweep --grid kd.temperature=[1,3,6] --grid kd.alpha=[0.3,0.7] --out results/kd-sweep
  distillbench sweep --config configs/kd-sweep.yaml --executor ray --address auto

offline smoke test (generated data and random backbones; never CIFAR-10 results):
  distillbench synth-data data/synthetic --train 2000 --test 500
  distillbench random-weights data/weights
  distillbench run --data-dir data/synthetic --set data.val_size=200 --set train.epochs=2 \\
      --set weights.resnet50=data/weights/resnet50.pt --set weights.vgg16=data/weights/vgg16.pt \\
      --out results/smoke
"""


def _study_options(parser: argparse.ArgumentParser) -> None:
    """The options ``run`` and ``sweep`` share."""
    parser.add_argument("--config", type=Path, help="study preset (YAML); default: the paper's protocol")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field by dotted path, value in YAML (repeatable): "
        "train.epochs=5, models=[small_cnn,vgg16], weights.vgg16=PATH, kd.alpha=0.7",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the dataset on disk, e.g. an extracted cifar-10-batches-py directory (sets data.dir); no download",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="train every model with seeds 0..N-1 (sets seeds; default: the config's, [0, 1, 2])",
    )
    parser.add_argument("--out", type=Path, help="output directory (default: results/<study name>)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="sets device")
    _plugin_option(parser)


def _plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE",
        help="a Python module (my_lab.kd) or .py file that registers your own architectures, datasets, "
        "augmentations or methods (repeatable; added to the config's plugins)",
    )


def version_text() -> str:
    """``distillbench 0.1.0 (torch 2.5.1+cpu, torchvision 0.20.1, Python 3.11.9)``: read from the
    installed packages' metadata, so that it is instant (torch is not imported)."""
    from importlib import metadata

    from distillbench import __version__

    def installed(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    python = ".".join(map(str, sys.version_info[:3]))
    return f"distillbench {__version__} (torch {installed('torch')}, torchvision {installed('torchvision')}, Python {python})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distillbench",
        description="Comparative study of a small CNN, fine-tuned ImageNet models and knowledge-distilled "
        "students on CIFAR-10 (or another image dataset), from raw data to a finished report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_text(), help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="train, evaluate and report every model of a study (resumes a stopped one)",
        description="Train, evaluate and report every model of the study. Run again with the same --out "
        "to resume: finished models with an unchanged config are kept, the rest is (re)trained.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _study_options(run)

    sweep = commands.add_parser(
        "sweep",
        help="train a grid of study variants (sweep.axes or --grid), select each model's setting on validation "
        "accuracy, report heatmaps (resumes a stopped one)",
        description="Every combination of the axes' values is a study (a grid point); runs shared by points "
        "(teachers do not depend on kd.*) train once. Each model's setting is selected on validation accuracy "
        "only; the test set is read once, for the selected point. Writes sweep.json, sweep.md/html and heatmaps. "
        "Run again with the same --out to resume.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _study_options(sweep)
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=[V1,V2,...]",
        help="an axis of the grid: a config key and its values in YAML (repeatable; sets sweep.axes.KEY), "
        "e.g. --grid kd.temperature=[1,3,6]",
    )
    sweep.add_argument("--executor", choices=["local", "ray"], help="sets sweep.executor (default: local)")
    sweep.add_argument(
        "--address",
        metavar="auto|HOST:PORT",
        help="ray: the cluster to use (sets sweep.address); default: start Ray on this machine",
    )

    report = commands.add_parser("report", help="rebuild results.json, report.md and figures from saved runs")
    report.add_argument("out", type=Path, help="a study's or a sweep's output directory")
    _plugin_option(report)  # a study's own plugins (its config's) are imported anyway

    synth = commands.add_parser(
        "synth-data",
        help="write generated, learnable data in a dataset's on-disk format (offline trials, tests, benchmarks)",
        description="Write generated, learnable images in the exact on-disk format of CIFAR-10 (cifar-10-batches-py), "
        "CIFAR-100 (cifar-100-python: fine and coarse labels), SVHN (train_32x32.mat, test_32x32.mat) or an image "
        "folder (train/<class>/*.png, test/<class>/*.png), marked as generated: a study on it reports "
        "synthetic=true and is never a result on the real dataset. Read it with --data-dir DIR "
        "--set data.dataset=FORMAT.",
    )
    synth.add_argument("directory", type=Path)
    synth.add_argument(
        "--format", dest="data_format", choices=list(SYNTH_FORMAT_NAMES), default="cifar10", help="default: cifar10"
    )
    synth.add_argument("--train", type=int, help="training images (default: the real dataset's: 50000, svhn 73257)")
    synth.add_argument("--test", type=int, help="test images (default: the real dataset's: 10000, svhn 26032)")
    synth.add_argument("--classes", type=int, help="cifar100 and imagefolder: number of classes (default: 100 and 10)")
    synth.add_argument("--seed", type=int, default=0)

    weights = commands.add_parser(
        "random-weights", help="save randomly initialised torchvision resnet50.pt and vgg16.pt (offline smoke tests)"
    )
    weights.add_argument("directory", type=Path)
    return parser


def _study_config(args: argparse.Namespace, extra: list[str] = ()) -> StudyConfig:
    """The config the study options (and ``extra`` --set items) give."""
    from distillbench.study.resolve import load_study_config

    overrides = list(args.overrides) + list(extra)
    if args.data_dir is not None:
        overrides.append(f"data.dir={args.data_dir}")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    if args.seeds is not None:
        if not 1 <= args.seeds <= MAX_SEEDS:
            raise UserError(f"--seeds {args.seeds}: give a number of seeds from 1 to {MAX_SEEDS}, e.g. --seeds 3.")
        overrides.append(f"seeds={list(range(args.seeds))}")
    return load_study_config(args.config, overrides, args.plugins)


def _run(args: argparse.Namespace) -> None:
    from distillbench.study.runner import Study

    cfg = _study_config(args)
    out = args.out if args.out is not None else Path("results") / cfg.name
    Study(cfg, out).run()


def _sweep(args: argparse.Namespace) -> None:
    from distillbench.study.sweep import Sweep

    cfg = _sweep_config(args)
    out = args.out if args.out is not None else Path("results") / f"{cfg.name}-sweep"
    Sweep(cfg, out).run()


def _sweep_config(args: argparse.Namespace) -> StudyConfig:
    """The config the sweep options give: the study options' with ``--grid``, ``--executor`` and
    ``--address`` set in its ``sweep:`` section."""
    extra = []
    for axis in args.grid:
        key, sep, values = axis.partition("=")
        expected = f"--grid {axis!r}: expected KEY=[V1,V2,...], e.g. --grid kd.temperature=[1,3,6]"
        parsed = parse_yaml_value(values, expected) if sep else None
        if not key.strip() or not isinstance(parsed, list):
            raise UserError(f"{expected}.")
        extra.append(f"sweep.axes={{{key.strip()}: {values}}}")  # the key stays whole: it holds dots
    if args.executor is not None:
        extra.append(f"sweep.executor={args.executor}")
    if args.address is not None:
        extra.append(f"sweep.address={args.address}")
    return _study_config(args, extra)


def _report(args: argparse.Namespace) -> None:
    from distillbench.plugins import load_plugins
    from distillbench.study.layout import RunLayout, SweepLayout
    from distillbench.study.lock import directory_lock
    from distillbench.study.results import finish_study
    from distillbench.study.store import sweep_of_point
    from distillbench.study.sweep import finish_sweep

    if not args.out.is_dir():
        raise UserError(f"{args.out} is not a directory. Give the --out of a study or a sweep.")
    load_plugins(args.plugins)
    started = time.perf_counter()
    if SweepLayout(args.out).config.is_file():
        print(f"Rebuilding the sweep in {args.out}: reading its points' runs, writing sweep.json and its report...")
        with directory_lock(args.out, "sweep"):
            finish_sweep(args.out)
        print(f"Sweep report rebuilt in {time.perf_counter() - started:.1f}s: {SweepLayout(args.out).report}")
        return
    print(f"Rebuilding the report of {args.out}: verifying its saved runs, writing results.json and the report...")
    sweep = sweep_of_point(args.out)  # a sweep's point: the sweep writes it, so the sweep's lock guards it
    with directory_lock(sweep if sweep is not None else args.out, "sweep" if sweep is not None else "study"):
        results = finish_study(args.out)
    print(f"Report rebuilt in {time.perf_counter() - started:.1f}s: {RunLayout(args.out).report} ({_tally(results)})")


def _tally(results: dict[str, Any]) -> str:
    """What the rebuilt report holds, in words: finished models, and runs unfinished or stale."""
    study = results.get("study", {})
    parts = [f"{len(study.get('finished', []))} of {len(study.get('models', []))} models finished"]
    if study.get("unfinished_runs"):
        parts.append(f"{len(study['unfinished_runs'])} run(s) unfinished")
    if study.get("stale_runs"):
        parts.append(f"{len(study['stale_runs'])} stale run(s), listed in the report")
    return "; ".join(parts)


def _synth(args: argparse.Namespace) -> None:
    from distillbench.data.cifar10 import MAX_CLASSES
    from distillbench.data.synthetic import SYNTH_FORMATS, write_synthetic

    spec = SYNTH_FORMATS[args.data_format]
    classes = spec.classes if args.classes is None else args.classes
    if spec.fixed_classes and classes != spec.classes:
        raise UserError(
            f"synth-data --format {args.data_format} --classes {classes}: {spec.dataset} has exactly {spec.classes} "
            "classes; leave --classes out, or choose --format cifar100 or imagefolder for another number."
        )
    if not 2 <= classes <= MAX_CLASSES:
        raise UserError(f"synth-data --classes {classes}: give a number of classes from 2 to {MAX_CLASSES:,}.")
    n_train = spec.train if args.train is None else args.train
    n_test = spec.test if args.test is None else args.test
    for option, count, least in (("--train", n_train, 2 * classes), ("--test", n_test, classes)):
        if not least <= count <= MAX_SYNTHETIC_IMAGES:
            raise UserError(
                f"synth-data {option} {count}: give a number of images from {least:,} to {MAX_SYNTHETIC_IMAGES:,} "
                f"(at least {least:,}: every one of the {classes} classes needs images), e.g. {option} {50 * classes}."
            )
    if not 0 <= args.seed <= 2**32 - 1:
        raise UserError(f"synth-data --seed {args.seed}: give a seed from 0 to {2**32 - 1}.")
    path = write_synthetic(args.data_format, args.directory, n_train, n_test, classes, args.seed)
    dataset = "" if args.data_format == "cifar10" else f" --set data.dataset={args.data_format}"
    print(
        f"Wrote {n_train} + {n_test} GENERATED images of {classes} classes in {spec.dataset} format to {path} "
        f"(never {'real' if args.data_format == 'imagefolder' else spec.dataset} results); "
        f"read them with --data-dir {path}{dataset}."
    )


def _random_weights(args: argparse.Namespace) -> None:
    from distillbench.models import BACKBONES
    from distillbench.models.weights import save_random_weights

    for path in save_random_weights(args.directory, BACKBONES.values()):
        print(f"Wrote random-init weights {path} (for smoke tests, not ImageNet)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {
        "run": _run,
        "sweep": _sweep,
        "report": _report,
        "synth-data": _synth,
        "random-weights": _random_weights,
    }
    try:
        handlers[args.command](args)
    except UserError as exc:
        _print_error(str(exc))
        return 2
    except OSError as exc:  # the operating system refused something no check foresaw: still one paragraph
        _print_error(describe_os_error(exc))
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished models are saved; run the same command again to resume.", file=sys.stderr)
        return 130
    return 0


def _print_error(message: str) -> None:
    # Paths and keys stay whole: a break at a hyphen would print a path that does not exist.
    print(
        "\n".join(textwrap.wrap(f"error: {message}", width=100, break_on_hyphens=False, break_long_words=False)),
        file=sys.stderr,
    )
