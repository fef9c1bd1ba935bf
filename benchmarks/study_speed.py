"""Time the paper study on generated data of full CIFAR-10 size: the naive path and the default.

Runs each path with a fixed number of epochs (no early stopping) in one process and prints, per
model and in total: seconds, training images/s, peak memory, and a projection to 20 epochs
(fixed costs + per-epoch time x 20). Usage:

    python benchmarks/study_speed.py --workdir /tmp/bench --epochs 2 --naive-epochs 1

The data are generated (`distillbench synth-data`), never CIFAR-10, and the backbones are
random-init: speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from distillbench.config import load_config
from distillbench.data.synthetic import write_cifar10_like
from distillbench.models import BACKBONES
from distillbench.models.weights import save_random_weights
from distillbench.study.runner import Study

PAPER_EPOCHS = 20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_path(name: str, workdir: Path, data_dir: Path, weights: dict[str, Path], epochs: int, extra: list[str]) -> dict:
    overrides = [
        f"data.dir={data_dir}", f"weights.resnet50={weights['resnet50']}", f"weights.vgg16={weights['vgg16']}",
        f"train.epochs={epochs}", "train.patience=null", f"perf.cache_dir={workdir / 'cache'}", "seeds=[0]", *extra,
    ]  # fmt: skip
    cfg = load_config(None, overrides)
    out = workdir / name
    started = time.perf_counter()
    study = Study(cfg, out)
    study.run()
    total = time.perf_counter() - started
    per_model = {}
    for key in cfg.models:
        record = json.loads((out / "runs" / key / "seed-0" / "run.json").read_text())
        per_epoch = record["train_seconds"] / record["epochs_trained"]
        per_model[key] = {
            "seconds": record["train_seconds"] + record["prepare_seconds"],
            "prepare_seconds": record["prepare_seconds"],
            "seconds_per_epoch": per_epoch,
            "train_images_per_s": len(study.data.train) / per_epoch,
            "projected_20_epochs": record["prepare_seconds"] + per_epoch * PAPER_EPOCHS,
        }
    measured_model_time = sum(m["seconds"] for m in per_model.values())
    overhead = total - measured_model_time  # data, checkpoints, reports: paid once per study
    projected = overhead + sum(m["projected_20_epochs"] for m in per_model.values())
    return {
        "per_model": per_model,
        "total_seconds": total,
        "projected_20_epochs": projected,
        "peak_rss_mib": _peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distillbench-bench"))
    parser.add_argument("--epochs", type=int, default=2, help="epochs measured on the default path")
    parser.add_argument("--naive-epochs", type=int, default=1, help="epochs measured on the naive path; 0 skips it")
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    args = parser.parse_args()
    data_dir = args.workdir / "cifar-10-batches-py"
    if not (data_dir / "test_batch").exists():
        write_cifar10_like(data_dir, args.train, args.test)
    weights_dir = args.workdir / "weights"
    weights = {p.stem: p for p in save_random_weights(weights_dir, BACKBONES.values())}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    paths = {"optimised": (args.epochs, [])}
    if args.naive_epochs:
        paths["naive"] = (args.naive_epochs, ["perf.naive=true"])
    report = {
        name: run_path(name, args.workdir, data_dir, weights, epochs, extra) for name, (epochs, extra) in paths.items()
    }
    print("\nmodel         path       measured s  s/epoch  train img/s  projected 20 epochs (s)")
    for name, result in report.items():
        for key, m in result["per_model"].items():
            print(f"{key:<13} {name:<10} {m['seconds']:>10.1f} {m['seconds_per_epoch']:>8.1f} "
                  f"{m['train_images_per_s']:>12.0f} {m['projected_20_epochs']:>12.0f}")  # fmt: skip
        print(f"{'TOTAL':<13} {name:<10} {result['total_seconds']:>10.1f} {'':>8} {'':>12} "
              f"{result['projected_20_epochs']:>12.0f}   peak RSS so far {result['peak_rss_mib']:.0f} MiB")  # fmt: skip
    if "naive" in report:
        ratio = report["naive"]["projected_20_epochs"] / report["optimised"]["projected_20_epochs"]
        print(f"\nnaive / optimised, projected to 20 epochs: {ratio:.1f}x")
    (args.workdir / "benchmark.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
