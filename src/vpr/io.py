"""Atomic outputs: write to a temporary sibling, then rename, so an interrupted run leaves nothing half-done."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary folder that replaces ``path`` only if the block finishes."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
    try:
        yield tmp
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w"):
    """Yield a file object whose content replaces ``path`` only if the block finishes."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=parent)
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
        fd, self.tmp = tempfile.mkstemp(prefix=f".{root}.", suffix=ext, dir=parent)
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
