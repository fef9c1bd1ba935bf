"""Project the CIFAR-100 KD benchmark's wall time from a few epochs run by distillbench itself.

Runs ``configs/cifar100-kd.yaml`` restricted to ``--models`` (their teachers train first) for
``--epochs`` epochs, one seed, on generated data of CIFAR-100's full size (50,000 training and 10,000
test images in cifar-100-python format: speed does not depend on the pixels), then reads each run's
per-epoch seconds from its history.csv (the first epoch left out: warm-up) and projects 240
epochs. The per-epoch time includes the test pass the preset makes after every epoch and, for a
student, its teacher's forward pass on every augmented batch. Usage (on the GPU):

    python benchmarks/kd_projection.py --workdir /tmp/kd-projection --epochs 3 --models resnet8x4_kd
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

from distillbench.api import load_config, run_study
from distillbench.data.synthetic import write_cifar100_like

BENCHMARK_EPOCHS = 240


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["resnet8x4_kd"])
    parser.add_argument("--train-limit", type=int, default=None, help="fewer training images (CPU rows)")
    args = parser.parse_args()
    data = args.workdir / "cifar-100-python"
    if not (data / "train").exists():
        write_cifar100_like(data)
    overrides = [
        f"data.dir={data}",
        f"train.epochs={args.epochs}",
        "seeds=[0]",
        f"models={json.dumps(args.models)}",
        "evaluation.efficiency=false",
        "evaluation.figures=false",
    ]
    if args.train_limit:
        overrides.append(f"data.train_limit={args.train_limit}")
    cfg = load_config(Path(__file__).parents[1] / "configs" / "cifar100-kd.yaml", overrides)
    run_study(cfg, args.workdir / "study")
    images = args.train_limit or 50_000
    print(f"| Model | s / epoch (median of {args.epochs - 1}) | {BENCHMARK_EPOCHS} epochs on {images:,} images (min) |")
    print("|---|---:|---:|")
    total = 0.0
    for history_csv in sorted((args.workdir / "study" / "runs").glob("*/seed-0/history.csv")):
        with history_csv.open() as rows:
            history = [float(row["seconds"]) for row in csv.DictReader(rows)]
        if not history:  # a released teacher: loaded, not trained
            continue
        seconds = statistics.median(history[1:] or history)
        total += seconds * BENCHMARK_EPOCHS / 60
        print(f"| {history_csv.parents[1].name} | {seconds:.2f} | {seconds * BENCHMARK_EPOCHS / 60:.1f} |")
    print(f"| all of the above, one after another | | {total:.1f} |")


if __name__ == "__main__":
    main()
