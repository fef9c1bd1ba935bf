"""Where and how a study's tensors compute, resolved once and passed as one object."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from distillbench.config import PerfConfig
from distillbench.errors import UserError

# Frozen-prefix and teacher passes: on CPU, 256 keeps activations in cache (measured faster than 1024).
INFERENCE_BATCH = {"cpu": 256, "cuda": 2048}


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

    @classmethod
    def resolve(cls, perf: PerfConfig, device: str) -> Runtime:
        """The runtime ``perf`` (already ``effective()``) and ``device`` (auto | cpu | cuda) ask for here."""
        resolved = resolve_device(device)
        return cls(
            device=resolved,
            precision=resolve_precision(perf.precision, resolved),
            channels_last=perf.channels_last,
            compile=perf.compile,
            fused_optimizer=perf.fused_optimizer,
            inference_batch=INFERENCE_BATCH[resolved.type],
        )

    @property
    def numerics(self) -> str:
        """Precision and layout, as a cache key part: both change cached tensors' values."""
        return f"{self.precision}{'-channels_last' if self.channels_last else ''}"

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
