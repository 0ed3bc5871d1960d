"""Checkpoints: state dicts and plain metadata only, so they load with ``weights_only=True``.

Writes are atomic and durable: a temporary sibling, flushed to disk, then renamed over the old file, so a kill
or a full disk mid-write leaves the previous checkpoint intact (and no temporary file once the error is raised).
"""
from __future__ import annotations

import errno
import glob
import os

import torch

from vpr.errors import DataError, TrainingError
from vpr.io import atomic_path

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def save_checkpoint(path: str | os.PathLike, **content) -> None:
    """Atomically write ``content`` (tensors, state dicts, plain python values)."""
    path = os.fspath(path)
    _sweep_stale_temps(path)
    try:
        with atomic_path(path) as tmp:          # a sibling: the rename stays on one filesystem
            with open(tmp, "wb") as fh:         # a file object: a failed write keeps its errno
                torch.save(content, fh)
                fh.flush()
                os.fsync(fh.fileno())           # on disk before it replaces the old one (a late ENOSPC shows here)
    except Exception as exc:
        full = _disk_full(exc)
        if full is None:
            raise
        raise TrainingError(f"{path}: {full.strerror or 'disk full'} while saving the checkpoint; the previous "
                            f"one, if any, is kept: free some space and rerun (training resumes from last.pt)") from exc
    _fsync_dir(os.path.dirname(os.path.abspath(path)))   # the rename itself survives a power cut


def _disk_full(exc: BaseException) -> OSError | None:
    """The disk-full OSError behind ``exc``: torch.save re-raises a failed write as a RuntimeError."""
    for _ in range(16):                         # a short chain; never loop
        if exc is None or isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _sweep_stale_temps(path: str) -> None:
    """Remove temporary siblings a killed writer left (``.<name>.*<ext>``, as vpr.io.atomic_path names them)."""
    folder, name = os.path.split(os.path.abspath(path))
    root, ext = os.path.splitext(name)
    for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(root)}.*{glob.escape(ext)}")):
        try:
            os.remove(stale)
        except OSError:
            pass


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return                                  # not supported here (e.g. Windows): the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path) -> dict:
    """A checkpoint from a path (or an open binary file)."""
    if hasattr(path, "read"):
        return torch.load(path, map_location="cpu", weights_only=True)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: checkpoint not found; run the train stage first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file: one message
        raise DataError(f"{path}: not a readable checkpoint ({type(exc).__name__}); delete it and retrain") from None


def load_model(path):
    """Rebuild the network saved in a checkpoint; returns (model, checkpoint dict)."""
    from vpr.models.network import build_model
    ckpt = load_checkpoint(path)
    spec = dict(ckpt["spec"])
    # The saved weights replace any pretrained ones: never download them again just to overwrite them.
    spec["backbone_settings"] = {**spec["backbone_settings"], **(
        {"pretrained": False} if "pretrained" in spec["backbone_settings"] else {})}
    model = build_model(spec)
    model.load_state_dict(ckpt["model"])
    model.to(memory_format=torch.channels_last)   # faster convolutions for inference (CPU and CUDA)
    model.eval()
    return model, ckpt
