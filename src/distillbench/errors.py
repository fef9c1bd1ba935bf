"""The one exception type a user is meant to read, and the words for what the operating system refused."""

from __future__ import annotations

import errno


class UserError(Exception):
    """A problem with the user's input or environment, reported as one paragraph, no traceback.

    The message says what is wrong and what to do about it.
    """


# What to do about the operating system errors a study meets (full disk, permissions, a directory in
# the way); anything else gets the generic advice.
_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space (or choose another --out or perf.cache_dir) and run again",
    errno.EDQUOT: "your disk quota is used up: free some space (or write elsewhere) and run again",
    errno.EACCES: "permission denied: make it writable for you (or choose another directory) and run again",
    errno.EPERM: "the operation is not permitted (an immutable or read-only file?): fix its attributes or choose "
    "another directory, and run again",
    errno.EROFS: "the file system is read-only: choose a directory on a writable one and run again",
    errno.EISDIR: "a directory is in the way where a file should be: remove or rename it and run again",
    errno.ENOTDIR: "a file is in the way where a directory should be: remove or rename it and run again",
    errno.ENAMETOOLONG: "the path is too long for the file system: choose a shorter --out",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) and run again",
}


def describe_os_error(exc: OSError, path: object = None, doing: str = "") -> str:
    """One paragraph for an ``OSError``: which path, what the system said, and what to do."""
    path = path if path is not None else exc.filename
    reason = exc.strerror or type(exc).__name__
    code = errno.errorcode.get(exc.errno or -1)
    where = f" {path}" if path is not None else ""
    action = (
        f"Could not {doing}{where}" if doing else f"The operating system refused an operation on{where or ' a file'}"
    )
    advice = _OS_ADVICE.get(exc.errno or -1, "check the path and its permissions, then run again")
    finished = " Files written before are intact (every write is atomic), and a study resumes where it stopped."
    return f"{action} ({reason}{f', {code}' if code else ''}): {advice}.{finished}"


def os_error(exc: OSError, path: object = None, doing: str = "") -> UserError:
    """``describe_os_error`` as the ``UserError`` to raise."""
    return UserError(describe_os_error(exc, path, doing))
