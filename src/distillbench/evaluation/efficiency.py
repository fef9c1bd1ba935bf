"""What a model costs to run: parameters, multiply-accumulates, checkpoint size, CPU speed.

Counts (``model_costs``) are exact and per model. Speed (``time_models``) is a measurement, and a
measurement on a shared machine is noisy: one report once gave identical small CNNs latencies from
0.3 ms to 92 ms. So speed is measured honestly:

- once per distinct structure (``structure_key``: the module tree, every tensor's shape and type,
  and the input shape): identical models share one measurement instead of getting different
  numbers for the same arithmetic;
- repeated and interleaved: every repeat times each distinct model once, round-robin, so a busy
  spell slows all models alike instead of whichever happened to be timed during it;
- reported as the median with its spread (the 10th and 90th percentiles of the repeats), and flagged
  ``timing_busy`` when the spread is wide (``BUSY_SPREAD``). A machine busy at a constant level the
  whole time slows every repeat alike and shows no spread: the flag catches an uneven load only.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from distillbench.models.classifier import count_parameters

THROUGHPUT_BATCH = 256
# (p90 - p10) / median above which a timing is flagged busy. Repeated forward passes of one
# fixed-shape model differ by timer, cache and clock-frequency effects: on a 2-core machine with
# light load beside (load average 1.2), one thread, 30 repeats, the small CNN's and a ResNet18's
# spreads were 12-40%; on the same machine under heavy load (load average 7) the small CNN's was 960%.
# A process competing for the cores stretches the passes it overlaps by 1.5x or more; once more than
# a tenth of the repeats are hit, the p90 is at least 1.5x the median: a spread of 50% or more.
BUSY_SPREAD = 0.5
# The timed fields of an efficiency record, shared by every run of one structure (``time_models``).
TIMING_FIELDS = (
    "latency_ms_batch1",
    "latency_ms_batch1_spread",
    "images_per_s_batch256",
    "images_per_s_batch256_spread",
    "timing_spread",
    "timing_busy",
    "cpu_threads",
    "timed_with",
)

Clock = Callable[[], float]


def count_macs(model: nn.Module, image_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one ``(channels, height, width)`` image's forward pass (convolutions
    and matrix products, as counted by ``torch.utils.flop_counter``: 2 FLOPs per MAC)."""
    image = torch.zeros(1, *image_shape, dtype=torch.uint8)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    return counter.get_total_flops() // 2


def structure_key(model: nn.Module, image_shape: tuple[int, int, int]) -> str:
    """A short hash of what a forward pass computes, apart from the weights' values: the module tree
    (classes and settings, as ``repr`` shows them), each parameter's and buffer's name, shape and
    type, and the input shape. Two models with one key cost the same to run."""
    digest = hashlib.sha256(repr(model).encode())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        digest.update(f"\n{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
    digest.update(f"\ninput:{tuple(image_shape)}".encode())
    return digest.hexdigest()[:16]


def model_costs(model: nn.Module, image_shape: tuple[int, int, int], checkpoint_bytes: int) -> dict[str, Any]:
    """The counted part of an efficiency record: parameters, MACs per image, checkpoint size."""
    total, trainable = count_parameters(model)
    return {
        "params": total,
        "trainable_params": trainable,
        "macs": count_macs(copy.deepcopy(model).cpu().eval(), image_shape),
        "checkpoint_bytes": checkpoint_bytes,
        "image_shape": list(image_shape),  # (channels, height, width) the MACs and timings are for
    }


@torch.inference_mode()
def _interleaved_seconds(
    models: Sequence[nn.Module], batch: torch.Tensor, repeats: int, clock: Clock
) -> list[list[float]]:
    """Seconds of each model's forward pass on ``batch``, ``repeats`` times, round-robin over the models."""
    for model in models:
        model(batch)  # warm-up: allocations and kernel selection are not the model's cost
    seconds: list[list[float]] = [[] for _ in models]
    for _ in range(repeats):
        for model, times in zip(models, seconds):
            start = clock()
            model(batch)
            times.append(clock() - start)
    return seconds


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    """The 10th, 50th and 90th percentiles (linear interpolation between repeats)."""
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return float(p10), float(median), float(p90)


def _timing_record(latency_seconds: list[float], batch_seconds: list[float]) -> dict[str, Any]:
    low, latency, high = _percentiles(latency_seconds)
    fast, batch, slow = _percentiles(batch_seconds)
    spread = max((high - low) / latency, (slow - fast) / batch)
    return {
        "latency_ms_batch1": 1000 * latency,
        "latency_ms_batch1_spread": [1000 * low, 1000 * high],  # p10, p90 of the repeats
        "images_per_s_batch256": THROUGHPUT_BATCH / batch,
        "images_per_s_batch256_spread": [THROUGHPUT_BATCH / slow, THROUGHPUT_BATCH / fast],  # p10, p90
        "timing_spread": spread,  # (p90 - p10) / median, the wider of the two timings
        "timing_busy": spread > BUSY_SPREAD,
        "cpu_threads": torch.get_num_threads(),
    }


def time_models(
    models: Sequence[nn.Module],
    image_shape: tuple[int, int, int],
    latency_repeats: int = 30,
    clock: Clock = time.perf_counter,
) -> list[dict[str, Any]]:
    """The timed part of each model's efficiency record, on the CPU with torch's current threads:
    batch-1 latency (``latency_repeats`` passes) and batch-256 throughput (a tenth as many, at least
    3), each model's passes interleaved with the others'. Give each distinct structure once."""
    cpu_models = [copy.deepcopy(model).cpu().eval() for model in models]
    generator = torch.Generator().manual_seed(0)
    one = torch.randint(0, 256, (1, *image_shape), dtype=torch.uint8, generator=generator)
    many = torch.randint(0, 256, (THROUGHPUT_BATCH, *image_shape), dtype=torch.uint8, generator=generator)
    latencies = _interleaved_seconds(cpu_models, one, latency_repeats, clock)
    batches = _interleaved_seconds(cpu_models, many, max(3, latency_repeats // 10), clock)
    return [_timing_record(latency, batch) for latency, batch in zip(latencies, batches)]


def measure_efficiency(
    model: nn.Module, image_shape: tuple[int, int, int], checkpoint_bytes: int, latency_repeats: int = 30
) -> dict[str, Any]:
    """Efficiency record of one model (counted and timed alone); a study times its models together
    (``Study.time_efficiency``)."""
    return {
        **model_costs(model, image_shape, checkpoint_bytes),
        **time_models([model], image_shape, latency_repeats)[0],
        "timing_key": structure_key(model, image_shape),
        "timed_with": None,
    }
