"""Memory that a feature method's teacher features take when kept for the whole training split
(``perf.teacher_feature_memory_mb``: without augmentation they are computed once and kept if they
fit), per teacher architecture of the CIFAR KD zoo and per feature method: float32, 50,000 images
(CIFAR-100's training set), only the fields each method reads (``DistillMethod.teacher_features``),
by the same function the study uses (``study.inputs.kept_teacher_mib``). Shapes only: nothing is
trained or timed. Usage:

    python benchmarks/feature_memory.py
    python benchmarks/feature_memory.py --archs resnet32x4 wrn_40_2 --images 50000
"""

from __future__ import annotations

import argparse

import torch

from distillbench.config import ModelDef
from distillbench.models import build_model
from distillbench.study.inputs import kept_teacher_mib
from distillbench.training.distill import METHODS

TEACHERS = ("resnet32x4", "wrn_40_2", "vgg13_bn", "resnet50_cifar", "resnet56", "resnet110")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(TEACHERS))
    parser.add_argument("--images", type=int, default=50_000)
    args = parser.parse_args()
    methods = sorted(name for name in METHODS if METHODS[name].needs_features)
    print("| Teacher | " + " | ".join(f"`{m}` (MiB)" for m in methods) + " |")
    print("|---|" + "---:|" * len(methods))
    probe = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    for arch in args.archs:
        model = build_model(ModelDef(arch=arch, lr=0.1), None, (3, 32, 32), 100).eval()
        with torch.no_grad():
            features = model.forward_features(probe)
        sizes = [kept_teacher_mib(features, METHODS[m].teacher_features, args.images) for m in methods]
        print(f"| {arch} | " + " | ".join(f"{size:,.0f}" for size in sizes) + " |")


if __name__ == "__main__":
    main()
