"""Content-addressed caches of frozen activations and teacher logits, in memory and on disk.

A key hashes everything the tensor depends on (weights, preprocessing, data, precision), so a
stale entry can never be found; a file that fails its checksum is recomputed, never trusted. Worker
processes share the directory: an entry one of them is computing, the others wait for and read.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from torch import nn

from distillbench.atomic import write_bytes
from distillbench.config import PerfConfig
from distillbench.errors import UserError


def _bytes_view(tensor: torch.Tensor) -> memoryview:
    """The tensor's raw bytes for hashing, without copying a contiguous CPU tensor."""
    return memoryview(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())


def hash_module(module: nn.Module) -> str:
    """sha256 over a module's structure and every tensor of its state."""
    digest = hashlib.sha256(repr(module).encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(_bytes_view(tensor))
    return digest.hexdigest()


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def _tensor_digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(_bytes_view(tensor)).hexdigest()


class TensorCache:
    """``get(key, compute)``: memory first, then ``directory`` (if any), else compute and store.

    The disk is an optimisation: a cache directory that cannot be written (full, read-only, a
    directory where a file should go) is switched off with a warning, and the study computes on."""

    def __init__(self, directory: Path | None, log: Callable[[str], None] = print):
        self.directory = Path(directory).expanduser() if directory is not None else None
        self.memory: dict[str, torch.Tensor] = {}
        self.log = log

    @classmethod
    def for_study(cls, perf: PerfConfig) -> TensorCache:
        """The cache ``perf`` asks for: on disk in ``perf.cache_dir`` with ``perf.disk_cache``, else in memory."""
        return cls(perf.cache_dir if perf.disk_cache else None)

    def disable(self, why: str) -> None:
        """No disk from now on (memory still caches), saying ``why``."""
        if self.directory is not None:
            self.log(f"WARNING: {why}")
        self.directory = None

    def _write(self, path: Path, tensor: torch.Tensor) -> None:
        buffer = io.BytesIO()
        torch.save({"tensor": tensor, "sha256": _tensor_digest(tensor)}, buffer)
        try:
            write_bytes(path, buffer.getvalue())
        except UserError as exc:  # write_bytes words what the operating system refused
            self.disable(f"the disk cache is switched off for this study: {exc}")

    def _read(self, path: Path) -> torch.Tensor | None:
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            tensor, digest = stored["tensor"], stored["sha256"]
            if _tensor_digest(tensor) == digest:
                return tensor
            self.log(f"cache file {path} fails its checksum; recomputing it")
        except FileNotFoundError:
            return None
        except Exception as exc:  # any unreadable cache file is rebuilt, whatever the reason
            self.log(f"cache file {path} is unreadable ({type(exc).__name__}); recomputing it")
        return None

    def get(self, key: str, compute: Callable[[], torch.Tensor], what: str = "") -> torch.Tensor:
        if key in self.memory:
            return self.memory[key]
        with self._claim(key, what):
            return self._get(key, compute, what)

    @contextlib.contextmanager
    def _claim(self, key: str, what: str) -> Iterator[None]:
        """Inside: no other process computes ``key`` into this directory (a file lock per entry), so
        two workers that need the same features compute them once: the second waits, then reads."""
        if self.directory is None:
            yield
            return
        try:
            (self.directory / "locks").mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.directory / "locks" / f"{key}.lock"), thread_local=False)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                self.log(f"waiting for another process computing {what or key}")
                lock.acquire()
        except OSError:  # a broken cache directory: _get finds out, says so and switches the disk off
            yield
            return
        try:
            yield
        finally:
            lock.release()

    def _get(self, key: str, compute: Callable[[], torch.Tensor], what: str) -> torch.Tensor:
        path = self.directory / f"{key}.pt" if self.directory is not None else None
        tensor = self._read(path) if path is not None else None
        if tensor is None:
            started = time.perf_counter()
            if what:
                self.log(f"computing {what}")
            tensor = compute().contiguous()
            if what:
                self.log(f"computed {what} in {time.perf_counter() - started:.1f}s")
            if path is not None:
                self._write(path, tensor)
        elif what:
            self.log(f"reusing cached {what} ({path.name})")
        self.memory[key] = tensor
        return tensor
