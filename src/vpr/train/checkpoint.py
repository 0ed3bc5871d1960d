"""Saving checkpoints: state dicts and plain metadata only, so they load with ``weights_only=True``
(vpr.models.checkpoint reads them back).

Writes are atomic and durable: a temporary sibling, flushed to disk, then renamed over the old file, so a kill
or a full disk mid-write leaves the previous checkpoint intact (and no temporary file once the error is raised).
"""

from __future__ import annotations

import errno
import glob
import os

import torch

from vpr.errors import TrainingError
from vpr.io import atomic_path

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def save_checkpoint(path: str | os.PathLike, **content) -> None:
    """Atomically write ``content`` (tensors, state dicts, plain python values)."""
    path = os.fspath(path)
    _sweep_stale_temps(path)
    try:
        with atomic_path(path) as tmp:  # a sibling: the rename stays on one filesystem
            with open(tmp, "wb") as fh:  # a file object: a failed write keeps its errno
                torch.save(content, fh)
                fh.flush()
                os.fsync(
                    fh.fileno()
                )  # on disk before it replaces the old one (a late ENOSPC shows here)
    except Exception as exc:
        full = _disk_full(exc)
        if full is None:
            raise
        raise TrainingError(
            f"{path}: {full.strerror or 'disk full'} while saving the checkpoint; the previous "
            f"one, if any, is kept: free some space and rerun (training resumes from last.pt)"
        ) from exc
    _fsync_dir(os.path.dirname(os.path.abspath(path)))  # the rename itself survives a power cut


def _disk_full(exc: BaseException) -> OSError | None:
    """The disk-full OSError behind ``exc``: torch.save re-raises a failed write as a RuntimeError."""
    for _ in range(16):  # a short chain; never loop
        if exc is None or isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _sweep_stale_temps(path: str) -> None:
    """Remove temporary siblings a killed writer left (``.<name>.*<ext>``, as vpr.io.atomic_path names them)."""
    folder, name = os.path.split(os.path.abspath(path))
    root, ext = os.path.splitext(name)
    for stale in glob.glob(
        os.path.join(glob.escape(folder), f".{glob.escape(root)}.*{glob.escape(ext)}")
    ):
        try:
            os.remove(stale)
        except OSError:
            pass


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows): the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
