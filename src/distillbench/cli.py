"""``distillbench``: run the study, rebuild its report, make offline test data."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from distillbench.errors import UserError

EPILOG = """\
examples:
  distillbench run                                     the paper's protocol, CIFAR-10 downloaded
  distillbench run --data-dir ~/data/cifar-10-batches-py --out results/paper
  distillbench run --config configs/paper.yaml --set train.epochs=5 --set models=[small_cnn,resnet50]
  distillbench run --seeds 1                           one seed per model, as the paper did (default: 3)
  distillbench report results/paper                    rebuild report + figures from saved runs

offline smoke test (generated data and random backbones; never CIFAR-10 results):
  distillbench synth-data data/synthetic --train 2000 --test 500
  distillbench random-weights data/weights
  distillbench run --data-dir data/synthetic --set weights.resnet50=data/weights/resnet50.pt \\
      --set weights.vgg16=data/weights/vgg16.pt --set train.epochs=2 --out results/smoke
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distillbench",
        description="Comparative study of a small CNN, fine-tuned ImageNet models and knowledge-distilled "
        "students on CIFAR-10, from raw data to a finished report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="train, evaluate and report every model of a study (resumes a stopped one)",
        description="Train, evaluate and report every model of the study. Run again with the same --out "
        "to resume: finished models with an unchanged config are kept, the rest is (re)trained.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", type=Path, help="study preset (YAML); default: the paper's protocol")
    run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override any config field by dotted path, value in YAML (repeatable): "
        "train.epochs=5, models=[small_cnn,vgg16], weights.vgg16=PATH, kd.alpha=0.7",
    )  # fmt: skip
    run.add_argument(
        "--data-dir", type=Path, help="extracted cifar-10-batches-py directory (sets data.dir); no download"
    )
    run.add_argument(
        "--seeds", type=int, metavar="N",
        help="train every model with seeds 0..N-1 (sets seeds; default: the config's, [0, 1, 2])",
    )  # fmt: skip
    run.add_argument("--out", type=Path, help="output directory (default: results/<study name>)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], help="sets device")

    report = commands.add_parser("report", help="rebuild results.json, report.md and figures from saved runs")
    report.add_argument("out", type=Path, help="a study's output directory")

    synth = commands.add_parser(
        "synth-data", help="write generated, learnable data in CIFAR-10's on-disk format (for tests, benchmarks)"
    )
    synth.add_argument("directory", type=Path)
    synth.add_argument("--train", type=int, default=50_000, help="training images (default: 50000)")
    synth.add_argument("--test", type=int, default=10_000, help="test images (default: 10000)")
    synth.add_argument("--seed", type=int, default=0)

    weights = commands.add_parser(
        "random-weights", help="save randomly initialised torchvision resnet50.pt and vgg16.pt (offline smoke tests)"
    )
    weights.add_argument("directory", type=Path)
    return parser


def _run(args: argparse.Namespace) -> None:
    from distillbench.study.resolve import load_study_config
    from distillbench.study.runner import Study

    overrides = list(args.overrides)
    if args.data_dir is not None:
        overrides.append(f"data.dir={args.data_dir}")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    if args.seeds is not None:
        if args.seeds < 1:
            raise UserError(f"--seeds {args.seeds}: give a number of seeds >= 1, e.g. --seeds 3.")
        overrides.append(f"seeds={list(range(args.seeds))}")
    cfg = load_study_config(args.config, overrides)
    out = args.out if args.out is not None else Path("results") / cfg.name
    Study(cfg, out).run()


def _report(args: argparse.Namespace) -> None:
    from distillbench.study.layout import RunLayout
    from distillbench.study.results import finish_study

    finish_study(args.out)
    print(f"Report rebuilt: {RunLayout(args.out).report}")


def _synth(args: argparse.Namespace) -> None:
    from distillbench.data.synthetic import write_cifar10_like

    path = write_cifar10_like(args.directory, args.train, args.test, args.seed)
    print(f"Wrote {args.train} + {args.test} GENERATED images in CIFAR-10 format to {path} (not CIFAR-10).")


def _random_weights(args: argparse.Namespace) -> None:
    from distillbench.models.weights import save_random_weights

    for path in save_random_weights(args.directory):
        print(f"Wrote random-init weights {path} (for smoke tests, not ImageNet)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"run": _run, "report": _report, "synth-data": _synth, "random-weights": _random_weights}
    try:
        handlers[args.command](args)
    except UserError as exc:
        # Paths and keys stay whole: a break at a hyphen would print a path that does not exist.
        print(
            "\n".join(textwrap.wrap(f"error: {exc}", width=100, break_on_hyphens=False, break_long_words=False)),
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished models are saved; run the same command again to resume.", file=sys.stderr)
        return 130
    return 0
