"""Atomic file writes: a reader sees the old file or the new one, never half of either. And the
sha256 of a file, hashed once per process while the file is unchanged.

A write goes to a temporary file beside its target (``.<name>.<pid>.<random>.tmp``), is fsynced and
renamed over the target. A writer killed mid-write leaves its temporary file behind; the next writer
of that directory removes it (``remove_temporaries``). What the operating system refuses (a full
disk, no permission, a directory in the way) is a one-paragraph ``UserError`` naming the path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from distillbench.errors import os_error

# .<target name>.<pid of the writer>.<mkstemp's random part>.tmp
_TEMPORARY = re.compile(r"\..+\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp")
_OLDER_TEMPORARY = re.compile(r"\..+\.[A-Za-z0-9_]+\.tmp")  # written before the pid was in the name
ORPHAN_AGE_SECONDS = 24 * 3600  # a temporary file without a pid this old is no write in progress
DEAD_WRITER_AGE_SECONDS = 3600  # and one whose pid is not running here (it may be another host's) this old


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    except OSError as exc:
        raise os_error(exc, path, "write") from None
    try:
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise os_error(exc, path, "write") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> None:
    write_atomic(path, lambda handle: handle.write(data))


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):  # another user's process, or no way to tell
        return True
    return True


def remove_temporaries(directory: Path, shared: bool = False, recursive: bool = True) -> int:
    """Remove the temporary files that killed writes left in ``directory`` (and below it, if
    ``recursive``); the number removed. A directory this process holds the lock of (``shared=False``) has no other
    writer, so every temporary file is a leftover. In a ``shared`` one (the cache, written by
    several studies) only those whose writer is no longer running (or, without a pid, a day old)."""
    removed = 0
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    for path in _temporary_files(directory, recursive):
        match = _TEMPORARY.fullmatch(path.name)
        if shared:
            if match is not None and (int(match["pid"]) == os.getpid() or _process_alive(int(match["pid"]))):
                continue
            if not _is_old(path, DEAD_WRITER_AGE_SECONDS if match is not None else ORPHAN_AGE_SECONDS):
                continue
        elif match is None and not _OLDER_TEMPORARY.fullmatch(path.name):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def _temporary_files(directory: Path, recursive: bool) -> list[Path]:
    """The ``.*.tmp`` files in ``directory`` (and below, if ``recursive``), symbolic links neither
    followed nor returned: nothing outside the directory is ever removed."""
    found = []
    for folder, _subfolders, names in os.walk(directory, followlinks=False):
        found += [Path(folder) / n for n in names if n.startswith(".") and n.endswith(".tmp")]
        if not recursive:
            break
    return [path for path in found if not path.is_symlink()]


def _is_old(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


_FILE_HASHES: dict[tuple[Path, int, int, int], str] = {}  # (path, inode, size, mtime) -> sha256


def file_sha256(path: Path) -> str:
    """sha256 of a file, hashed once per process while the file is unchanged (a VGG16 file is 0.5 GB;
    a checkpoint is verified each time it is judged). An atomic rewrite gives a new inode, so a
    replaced file is always hashed anew."""
    stat = Path(path).stat()
    memo = (Path(path).resolve(), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if memo not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        _FILE_HASHES[memo] = digest.hexdigest()
    return _FILE_HASHES[memo]
