"""Training images/s of a fully fine-tuned backbone at a given input size, on this machine's
default runtime (random-init weights: speed does not depend on their values). Usage:

    python benchmarks/teacher_speed.py --arch resnet50 --sizes 224 64 --batch 32 --steps 3
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from distillbench.config import ModelDef, PerfConfig
from distillbench.models import build_model
from distillbench.training.optim import build_optimizer
from distillbench.training.runtime import Runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 64])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps, after one warm-up step")
    args = parser.parse_args()
    runtime = Runtime.resolve(PerfConfig(), "auto")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {runtime.device}, {runtime.precision}")
    for size in args.sizes:
        spec = ModelDef(arch=args.arch, lr=0.01, optimizer="sgd", trainable_layers="all", input_size=size,
                        input_norm="imagenet")  # fmt: skip
        memory = torch.channels_last if runtime.channels_last else torch.contiguous_format
        model = build_model(spec, "none", (3, 32, 32), 10).to(runtime.device, memory_format=memory).train()
        optimizer = build_optimizer(model.named_parameters(), spec, runtime.fused_optimizer)
        images = runtime.to_device(torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8))
        labels = torch.randint(0, 10, (args.batch,), device=runtime.device)
        for step in range(args.steps + 1):
            if step == 1:
                if runtime.device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
            with runtime.autocast():
                loss = F.cross_entropy(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        rate = args.steps * args.batch / (time.perf_counter() - started)
        print(f"{args.arch} at {size} px: {rate:,.1f} images/s, {45_000 / rate / 60:,.1f} min per epoch of 45,000")


if __name__ == "__main__":
    main()
