"""Training images/s of every CIFAR KD zoo architecture at 32x32, 100 classes, batch 64 (the
benchmark's), on this machine's default runtime: crop-and-flip on the device, SGD step, as the
training loop runs them (random-init weights: speed does not depend on their values). With
``--project``, the time of a 240-epoch run on 50,000 images at that speed (training steps only;
the per-epoch test pass and a KD teacher's forward pass add to it). Usage:

    python benchmarks/zoo_speed.py                      # every zoo architecture
    python benchmarks/zoo_speed.py --archs resnet8x4 resnet32x4 --steps 5 --project
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from distillbench.config import ModelDef, PerfConfig
from distillbench.data.augment import random_crop_flip
from distillbench.evaluation.efficiency import count_macs
from distillbench.models import build_model
from distillbench.models.classifier import count_parameters
from distillbench.models.zoo import ARCHITECTURES_OF_THE_ZOO
from distillbench.training.optim import build_optimizer
from distillbench.training.runtime import Runtime

BENCHMARK_EPOCHS, BENCHMARK_IMAGES = 240, 50_000


def images_per_second(arch: str, runtime: Runtime, batch: int, steps: int) -> float:
    spec = ModelDef(arch=arch, lr=0.05, optimizer="sgd", weight_decay=5e-4, init="torch", input_norm="cifar100")
    memory = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model = build_model(spec, None, (3, 32, 32), 100).to(runtime.device, memory_format=memory).train()
    optimizer = build_optimizer(model.named_parameters(), spec, runtime.fused_optimizer)
    images = runtime.to_device(torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8))
    labels = torch.randint(0, 100, (batch,), device=runtime.device)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps + 1):  # step 0 warms up (allocations, kernel choice)
        if step == 1:
            if runtime.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        with runtime.autocast():
            loss = F.cross_entropy(model(random_crop_flip(images, generator)).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=list(ARCHITECTURES_OF_THE_ZOO))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps, after one warm-up step")
    parser.add_argument("--project", action="store_true", help="project a 240-epoch run on 50,000 images")
    args = parser.parse_args()
    runtime = Runtime.resolve(PerfConfig(), "auto")
    device = torch.cuda.get_device_name() if runtime.device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}, {runtime.precision}")
    print(
        "| Architecture | Parameters | MMACs / image | Training images/s"
        + (" | 240 epochs (h) |" if args.project else " |")
    )
    print("|---|---:|---:|---:|" + ("---:|" if args.project else ""))
    for arch in args.archs:
        model = build_model(ModelDef(arch=arch, lr=0.05, init="torch"), None, (3, 32, 32), 100)
        parameters, macs = count_parameters(model)[0], count_macs(model.eval(), (3, 32, 32))
        rate = images_per_second(arch, runtime, args.batch, args.steps)
        row = f"| {arch} | {parameters:,} | {macs / 1e6:,.1f} | {rate:,.0f} |"
        if args.project:
            row += f" {BENCHMARK_EPOCHS * BENCHMARK_IMAGES / rate / 3600:,.2f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
