"""Image checks for build_gt: bad files (undecodable, truncated, unnamed) are collected per folder and
reported by name (first few + count), then skipped with a warning, or fail the stage with ``gt.strict``."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from vpr.errors import DataError, DataWarning
from vpr.progress import quiet

IMAGE_CHECKS = ("none", "header", "decode")
SHOW = 5  # names listed in a report; the rest are counted


def warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=2)


class Problems:
    """Bad files of one folder, grouped by reason; reported in one line."""

    def __init__(self, where: str):
        self.where = where
        self.by_reason: dict[str, list[str]] = {}
        self.hints: dict[str, None] = {}  # said once after the names (ordered set)

    def add(self, reason: str, name: str, hint: str | None = None) -> None:
        self.by_reason.setdefault(reason, []).append(name)
        if hint:
            self.hints[hint] = None

    def merge(self, other: Problems) -> None:
        for reason, names in other.by_reason.items():
            self.by_reason.setdefault(reason, []).extend(names)
        self.hints.update(other.hints)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_reason.values())

    def summary(self) -> str:
        """``2 with 13 '@' fields instead of 14: a.jpg, b.jpg; 1 does not decode: c.jpg; <hints>``"""
        parts = []
        for reason, names in self.by_reason.items():
            more = f", ... (+{len(names) - SHOW} more)" if len(names) > SHOW else ""
            parts.append(f"{len(names)} {reason}: {', '.join(names[:SHOW])}{more}")
        return "; ".join(parts + list(self.hints))

    def message(self) -> str:
        return f"{self.where}: {len(self)} images skipped: {self.summary()}"

    def report(self, strict: bool) -> None:
        if not self:
            return
        if strict:
            raise DataError(
                self.message().replace("images skipped", "bad images")
                + "; fix or remove them, or set gt.strict: false to skip them"
            )
        warn(self.message() + "; set gt.strict: true to fail instead")


def image_problem(path: str, check: str = "header") -> str | None:
    """Why ``path`` is not a usable image, or None. ``header``: format, size and (JPEG) end marker / (PNG)
    chunk CRCs — catches truncated files at ~0.05 ms per 512 px JPEG; other formats are decoded;
    ``decode``: a full decode (~1 ms)."""
    if check == "none":
        return None
    try:
        with (
            open(path, "rb") as fh,
            Image.open(fh) as img,
        ):  # one open: PIL reads the header, we read the tail
            if img.width < 1 or img.height < 1:
                return "has no pixels"
            if check == "decode":
                img.load()
            elif img.format == "PNG":
                img.verify()
            elif img.format == "JPEG":
                fh.seek(-min(1024, os.fstat(fh.fileno()).st_size), os.SEEK_END)
                if b"\xff\xd9" not in fh.read():
                    return "does not decode (no JPEG end marker: truncated)"
            else:  # WebP, TIFF, BMP: no cheap tail check, decode them
                img.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        return f"does not decode ({exc.__class__.__name__})"
    return None


def check_images(
    paths, check: str, problems: Problems, base: str, progress: bool = False, only=None
) -> np.ndarray:
    """Boolean mask of the images that pass ``check`` (those outside the ``only`` mask are not looked at);
    the others are added to ``problems``."""
    ok = np.ones(len(paths), dtype=bool) if only is None else np.asarray(only, dtype=bool).copy()
    if check == "none":
        return ok
    for i in tqdm(
        np.nonzero(ok)[0], desc=f"checking {base}", unit="img", **quiet(progress), leave=False
    ):
        why = image_problem(paths[i], check)
        if why:
            ok[i] = False
            problems.add(why.split(" (")[0], os.path.relpath(paths[i], base))
    return ok
