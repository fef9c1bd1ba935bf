"""Time the paper study (3 seeds) on one process against local worker processes, and the bare small
CNN's training speed, on generated data of full CIFAR-10 size.

Each study runs as its own ``distillbench run`` process with early stopping off, at two epoch counts
(1 and 3 by default); wall time is fitted as ``fixed + per_epoch x epochs`` and projected to the
paper's 20 epochs. The frozen-feature cache is computed once before the timed runs and reused by all
of them (its one-off cost is reported and added to the projections). Usage:

    python benchmarks/parallel_speed.py --workdir /tmp/bench

The data are generated (``distillbench synth-data``), never CIFAR-10; the backbones are random-init:
speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from distillbench.config import ModelDef
from distillbench.data.synthetic import write_cifar10_like
from distillbench.models import BACKBONES, build_model
from distillbench.models.weights import save_random_weights

PAPER_EPOCHS = 20
PATHS = {  # name -> the study's settings
    "sequential": ["perf.workers=1"],
    "workers": ["perf.workers=auto"],
    "batched": ["perf.workers=1", "perf.batched=true"],
}


def study(workdir: Path, name: str, epochs: int, seeds: int, sets: list[str]) -> tuple[float, Path]:
    """Wall seconds of one ``distillbench run`` process, and its output directory."""
    out = workdir / "runs" / name
    weights = workdir / "weights"
    command = [sys.executable, "-m", "distillbench", "run", "--data-dir", str(workdir / "cifar-10-batches-py"),
               "--out", str(out), "--seeds", str(seeds)]  # fmt: skip
    for item in (f"weights.resnet50={weights / 'resnet50.pt'}", f"weights.vgg16={weights / 'vgg16.pt'}",
                 f"train.epochs={epochs}", "train.patience=null", f"perf.cache_dir={workdir / 'cache'}", *sets):  # fmt: skip
        command += ["--set", item]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, out


def small_cnn_images_per_s(out: Path) -> float:
    """Mean training images/s of the study's small-CNN runs (scratch and students), whole epochs."""
    rates = []
    for record_path in out.glob("runs/*/seed-*/run.json"):
        record = json.loads(record_path.read_text())
        if record["arch"] == "small_cnn":
            with open(record_path.parent / "history.csv", newline="") as handle:
                seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
            rates.append(45_000 / (sum(seconds) / len(seconds)))
    return sum(rates) / len(rates)


def bare_small_cnn_images_per_s(threads: int, steps: int = 400) -> float:
    """The small CNN alone: bf16 autocast, channels-last, fused Adam, batch 64 of resident uint8 images."""
    torch.set_num_threads(threads)
    model = build_model(ModelDef(arch="small_cnn", lr=1e-3), None, (3, 32, 32), 10)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    images = torch.randint(0, 256, (steps * 64, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (steps * 64,))
    for phase in ("warm-up", "timed"):
        started = time.perf_counter()
        for step in range(steps if phase == "timed" else 50):
            batch = images[step * 64 : (step + 1) * 64].contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(batch).float()
            loss = F.cross_entropy(logits, labels[step * 64 : (step + 1) * 64])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return steps * 64 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distillbench-bench"))
    parser.add_argument("--epochs", type=int, nargs=2, default=[1, 3], help="the two epoch counts measured")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--paths", nargs="+", default=["sequential", "workers"], choices=sorted(PATHS),
                        help="what to time; the first is the baseline of the speed-up")  # fmt: skip
    args = parser.parse_args()
    data_dir = args.workdir / "cifar-10-batches-py"
    if not (data_dir / "test_batch").exists():
        write_cifar10_like(data_dir, 50_000, 10_000)
    if not (args.workdir / "weights" / "vgg16.pt").exists():
        save_random_weights(args.workdir / "weights", BACKBONES.values())
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads", flush=True)
    features_seconds, _ = study(args.workdir, "features", 1, 1, ["models=[resnet50,vgg16]", "perf.workers=1"])
    print(f"frozen features, once (1-epoch heads included): {features_seconds:.1f}s", flush=True)
    report: dict = {"threads": threads, "features_seconds": features_seconds, "paths": {}}
    low, high = args.epochs
    for path in args.paths:
        sets = PATHS[path]
        walls = {}
        for epochs in (low, high):
            walls[epochs], out = study(args.workdir, f"{path}-{epochs}", epochs, args.seeds, sets)
            print(f"{path}, {epochs} epochs: {walls[epochs]:.1f}s", flush=True)
        per_epoch = (walls[high] - walls[low]) / (high - low)
        fixed = walls[low] - per_epoch * low
        report["paths"][path] = {
            "wall_seconds": walls,
            "per_epoch_seconds": per_epoch,
            "fixed_seconds": fixed,
            "projected_20_epochs_seconds": fixed + per_epoch * PAPER_EPOCHS,
            "small_cnn_images_per_s": small_cnn_images_per_s(out),
        }
    report["bare_small_cnn_images_per_s"] = {n: bare_small_cnn_images_per_s(n) for n in (threads, 1)}
    baseline = report["paths"][args.paths[0]]
    print("\npath        fixed s  s/epoch  projected 20 epochs  small-CNN train img/s (per run)")
    for path, r in report["paths"].items():
        print(f"{path:<11} {r['fixed_seconds']:>7.0f} {r['per_epoch_seconds']:>8.1f} "
              f"{r['projected_20_epochs_seconds'] / 60:>12.1f} min {r['small_cnn_images_per_s']:>14,.0f}")  # fmt: skip
    for path in args.paths[1:]:
        ratio = baseline["projected_20_epochs_seconds"] / report["paths"][path]["projected_20_epochs_seconds"]
        print(f"{path} vs {args.paths[0]}, projected: {ratio:.2f}x")
    print(f"bare small CNN: {report['bare_small_cnn_images_per_s']}")
    (args.workdir / "parallel_speed.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
