"""Atomic outputs: write to a temporary sibling, then rename, so an interrupted run leaves nothing half-done.

The temporaries get the mode a plain ``open``/``os.makedirs`` would give under the umask (0644 / 0755 under
umask 022), not mkstemp's / mkdtemp's owner-only 0600 / 0700: other users and services can read the outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile


def current_umask() -> int:
    """The process umask: from /proc/self/status on Linux (no side effect), else set and restored."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp_dir(parent: str, prefix: str) -> str:
    """``tempfile.mkdtemp`` in ``parent``, with the mode ``os.makedirs`` would give."""
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def make_temp_file(parent: str, prefix: str, suffix: str = "") -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``parent`` (fd, path), with the mode ``open(path, "w")`` would give."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
    os.chmod(tmp, 0o666 & ~current_umask())
    return fd, tmp


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary folder that replaces ``path`` only if the block finishes."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = make_temp_dir(parent, f".{os.path.basename(path)}.")
    old = None
    try:
        yield tmp
        if os.path.lexists(
            path
        ):  # set the previous output aside by a rename: it is never half-deleted
            old = tmp + ".old"
            os.replace(path, old)
        os.replace(tmp, path)
    finally:  # on any exit, Ctrl-C included: the previous output back if the new one is not in place
        if old and os.path.lexists(old) and not os.path.lexists(path):
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        if old:
            _remove(old)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w"):
    """Yield a file object whose content replaces ``path`` only if the block finishes."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = make_temp_file(parent, f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_path(path: str | os.PathLike):
    """Context manager yielding a temporary *path* (for writers that want a filename), renamed on success."""
    return _AtomicPath(os.fspath(path))


class _AtomicPath(contextlib.AbstractContextManager):
    def __init__(self, path: str):
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        root, ext = os.path.splitext(os.path.basename(path))
        fd, self.tmp = make_temp_file(parent, f".{root}.", ext)
        os.close(fd)

    def __enter__(self) -> str:
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)
        return False


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    with atomic_file(path) as fh:
        json.dump(obj, fh, indent=indent)
        fh.write("\n")
