"""What a model costs to run: parameters, multiply-accumulates, checkpoint size, CPU speed."""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from distillbench.models.classifier import count_parameters


def count_macs(model: nn.Module, image_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one ``(channels, height, width)`` image's forward pass (convolutions
    and matrix products, as counted by ``torch.utils.flop_counter``: 2 FLOPs per MAC)."""
    image = torch.zeros(1, *image_shape, dtype=torch.uint8)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    return counter.get_total_flops() // 2


@torch.inference_mode()
def _seconds_per_call(model: nn.Module, batch: torch.Tensor, repeats: int) -> float:
    model(batch)  # warm-up: allocations and kernel selection are not the model's cost
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_efficiency(
    model: nn.Module, image_shape: tuple[int, int, int], checkpoint_bytes: int, latency_repeats: int = 30
) -> dict[str, Any]:
    """Efficiency record of a trained model, timed on the CPU with torch's current thread count."""
    cpu_model = copy.deepcopy(model).cpu().eval()
    total, trainable = count_parameters(model)
    generator = torch.Generator().manual_seed(0)
    one = torch.randint(0, 256, (1, *image_shape), dtype=torch.uint8, generator=generator)
    many = torch.randint(0, 256, (256, *image_shape), dtype=torch.uint8, generator=generator)
    batch_seconds = _seconds_per_call(cpu_model, many, repeats=max(2, latency_repeats // 10))
    return {
        "params": total,
        "trainable_params": trainable,
        "macs": count_macs(cpu_model, image_shape),
        "checkpoint_bytes": checkpoint_bytes,
        "latency_ms_batch1": 1000 * _seconds_per_call(cpu_model, one, latency_repeats),
        "images_per_s_batch256": 256 / batch_seconds,
        "cpu_threads": torch.get_num_threads(),
        "image_shape": list(image_shape),  # (channels, height, width) the MACs and timings are for
    }
