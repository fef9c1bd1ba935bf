"""Small CNNs trained one by one (``fit``) against the same runs as one batched model
(``fit_group``), on this machine's default runtime, one epoch each on generated images of
CIFAR-10's size. What chose ``perf.batched``'s default. Usage:

    python benchmarks/batched_speed.py --members 3 --images 45000
"""

from __future__ import annotations

import argparse
import time

import torch

from distillbench.config import ModelDef, PerfConfig, TrainConfig
from distillbench.models import build_model
from distillbench.training.loop import FitSettings, GroupMember, cross_entropy_objective, fit, fit_group
from distillbench.training.optim import build_optimizer
from distillbench.training.runtime import Runtime

SPEC = ModelDef(arch="small_cnn", lr=1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--images", type=int, default=45_000)
    args = parser.parse_args()
    runtime = Runtime.resolve(PerfConfig(), "auto")
    generator = torch.Generator().manual_seed(0)
    train = (
        torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator),
        torch.randint(0, 10, (args.images,), generator=generator),
    )
    val = (train[0][:1000], train[1][:1000])
    memory = torch.channels_last if runtime.channels_last else torch.contiguous_format

    def model() -> torch.nn.Module:
        return build_model(SPEC, None, (3, 32, 32), 10).to(runtime.device, memory_format=memory)

    settings = FitSettings(
        TrainConfig(epochs=1, patience=None), lambda p: build_optimizer(p, SPEC, runtime.fused_optimizer)
    )

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {runtime.precision}, "
          f"channels_last={runtime.channels_last}, {args.members} members x {args.images} images")  # fmt: skip
    started = time.perf_counter()
    for seed in range(args.members):
        fit(model(), train, val, settings, seed=seed, runtime=runtime, name=f"alone {seed}")
    alone = time.perf_counter() - started
    members = [GroupMember(model(), seed, cross_entropy_objective, f"member {seed}") for seed in range(args.members)]
    started = time.perf_counter()
    fit_group(members, train, val, settings, runtime=runtime)
    grouped = time.perf_counter() - started
    total = args.members * args.images
    print(f"one by one: {alone:.1f}s ({total / alone:,.0f} images/s); batched: {grouped:.1f}s "
          f"({total / grouped:,.0f} images/s); batched / one by one: {alone / grouped:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
