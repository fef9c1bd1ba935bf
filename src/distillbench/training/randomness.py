"""Every run's random streams, derived from its seed alone, so a run never depends on what ran before.

A run draws from three streams: ``init`` (weights of new layers), ``order`` (batch order and
augmentation) and ``dropout``; a feature method's run from two more: ``distill`` (the initial
weights of its learned parts, ``DistillMethod.learned_parts``) and ``negatives`` (what it samples
per batch, such as CRD's contrastive negatives). Each is seeded from (seed, stream name); the model key is left out on
purpose: the models of one seed share their streams (common random numbers), so a KD student and the
small CNN trained from scratch with the same seed start from the same weights and see the same
batches, and their difference measures the training objective rather than the draw.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch

STREAMS = ("init", "order", "dropout", "distill", "negatives")


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream`` of a run with ``seed``; streams of one seed are unrelated."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; known: {', '.join(STREAMS)}")
    digest = hashlib.sha256(f"distillbench:{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def stream_generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` for ``stream`` of a run with ``seed``: it draws what torch's global
    generator on that device draws after ``global_rng(derive_seed(seed, stream), device)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, stream))


@contextlib.contextmanager
def global_rng(seed: int | None, device: torch.device | None = None) -> Iterator[None]:
    """Inside: torch's global RNG (CPU and ``device``) seeded with ``seed``, or left as it was if
    ``seed`` is None; after: restored. Code inside neither depends on nor disturbs the draws around
    it: layer initialisers and dropout draw from the global RNG, so every build and every training
    run goes through here."""
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        yield
