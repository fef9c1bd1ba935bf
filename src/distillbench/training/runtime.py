"""Where and how a study's tensors compute, resolved once and passed as one object.

Everything here can change a run's numbers: the device type (CPU and CUDA kernels, and dropout
masks, differ), the precision, the memory layout, and on the CPU the number of torch threads (a
convolution's weight gradient is summed in another order with 1 thread than with 2). So a run's
thread count is part of its runtime, decided by the study's settings alone (``perf.threads`` split
evenly over ``perf.workers``), never by where the run happens to train or how many runs are left.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from distillbench.config import PerfConfig
from distillbench.errors import UserError

# Frozen-prefix and teacher passes: on CPU, 256 keeps activations in cache (measured faster than 1024).
INFERENCE_BATCH = {"cpu": 256, "cuda": 2048}


MAX_AUTO_WORKERS = 8  # each worker holds the data and its caches in memory


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, e.g. a container's limit), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def planned_workers(perf: PerfConfig, device: torch.device) -> int:
    """``perf.workers``: ``auto`` is one worker per CPU (at most ``MAX_AUTO_WORKERS``) on a CPU, and
    one on a GPU. The study's setting, not how many runs are left to train."""
    if perf.workers == "auto":
        return 1 if device.type == "cuda" else min(cpu_count(), MAX_AUTO_WORKERS)
    return int(perf.workers)


def threads_per_run(perf: PerfConfig, device: torch.device) -> int:
    """The torch CPU threads every run of the study trains with: ``perf.threads`` (default: the CPUs
    this process may use) split evenly over the planned workers."""
    return max(1, (perf.threads or cpu_count()) // planned_workers(perf, device))


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda was asked for, but torch sees no CUDA GPU; use device=auto or cpu.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 where the hardware computes it natively (CUDA with bf16, a CPU with AVX512-BF16
    or AMX), else fp32; bf16 emulated on an older CPU would be slower than fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: absent in some builds
        native = False
    return "bf16" if native else "fp32"


@dataclass(frozen=True)
class Runtime:
    """Device, numerics (resolved: fp32 | bf16 | fp16 autocast), memory layout, compile, fused optimiser
    and inference batch: everything about *how* a run computes that is not *what* it computes."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    fused_optimizer: bool = False
    inference_batch: int = 256
    threads: int | None = None  # torch CPU threads of a run; None: leave torch's setting as it is

    @classmethod
    def resolve(cls, perf: PerfConfig, device: str, threads: int | None = None) -> Runtime:
        """The runtime ``perf`` (already ``effective()``) and ``device`` (auto | cpu | cuda) ask for here;
        ``threads``: a run's thread count if not the study's (``threads_per_run``)."""
        resolved = resolve_device(device)
        return cls(
            device=resolved,
            precision=resolve_precision(perf.precision, resolved),
            channels_last=perf.channels_last,
            compile=perf.compile,
            fused_optimizer=perf.fused_optimizer,
            inference_batch=INFERENCE_BATCH[resolved.type],
            threads=threads if threads is not None else threads_per_run(perf, resolved),
        )

    def identity(self) -> dict[str, object]:
        """What of the runtime a run's fingerprint holds: all that changes its numbers beyond float
        rounding. The thread count is not in it (a resumed study on another machine keeps its runs);
        it is recorded in run.json, and bit-identical results are promised for equal thread counts."""
        return {
            "device_type": self.device.type,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "fused_optimizer": self.fused_optimizer,
            "compile": self.compile,
        }

    def check_here(self) -> None:
        """Stop if this machine cannot compute as planned (a run planned for CUDA on a node without a GPU)."""
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(
                "This run was planned for a CUDA GPU, but torch sees none on this machine. Give every machine that "
                "trains the study's runs the same kind of device, or set device (and perf.precision) explicitly."
            )

    @contextlib.contextmanager
    def thread_scope(self) -> Iterator[None]:
        """Inside: torch computes with this runtime's thread count; after: the previous count."""
        if self.threads is None:
            yield
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    @property
    def numerics(self) -> str:
        """Precision, layout and (on the CPU) threads, as a cache key part: each may change cached
        tensors' values. (Forward passes gave bit-identical outputs with 1 and 2 threads on the
        development CPU, but no kernel library promises it, and a cached tensor must be what this run
        would compute itself.)"""
        threads = f"-threads{self.threads}" if self.device.type == "cpu" and self.threads is not None else ""
        return f"{self.precision}{'-channels_last' if self.channels_last else ''}{threads}"

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def to_device(self, batch: torch.Tensor) -> torch.Tensor:
        """A batch on the device; image-shaped (4-D) batches in channels-last layout if asked."""
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last and batch.dim() == 4:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch
