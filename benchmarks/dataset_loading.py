"""Time to load each dataset format: generated files in the official on-disk format, read the way a
study reads them (``load_study_data``: the reader, then the seeded, stratified validation split).

    .venv/bin/python benchmarks/dataset_loading.py --workdir /tmp/bench-data --train 50000 --test 10000

imagefolder is timed twice: the first read decodes every image (and fills the decoded-array cache),
the second reads the cache. Generated data measures speed, never accuracy.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from distillbench.config import DataConfig
from distillbench.data import load_study_data
from distillbench.data.synthetic import write_synthetic

FORMATS = {"cifar10": 10, "cifar100": 100, "svhn": 10, "imagefolder": 10}


def _time(cfg: DataConfig) -> float:
    started = time.perf_counter()
    load_study_data(cfg)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| format | train + test images | first read (s) | later reads, median (s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, classes in FORMATS.items():
        directory = args.workdir / name
        shutil.rmtree(directory, ignore_errors=True)
        data_dir = write_synthetic(name, directory, args.train, args.test, classes)
        cfg = DataConfig(dataset=name, dir=data_dir, download_root=args.workdir / "root", val_size=args.test // 2)
        shutil.rmtree(args.workdir / "root", ignore_errors=True)  # imagefolder's first read decodes
        first = _time(cfg)
        later = statistics.median(_time(cfg) for _ in range(args.repeats))
        print(f"| {name} | {args.train:,} + {args.test:,} | {first:.2f} | {later:.2f} |", flush=True)


if __name__ == "__main__":
    main()
