"""Decoding image files into RGB pixels (Pillow, and libjpeg-turbo for plain JPEGs), without torch: the light
stages that draw pictures import this alone."""

from __future__ import annotations

import io
import struct

import numpy as np
import simplejpeg
from PIL import Image, ImageOps

from vpr.errors import DataError

# A JPEG is decoded at a reduced scale (draft mode) only while it stays at least DRAFT_GAP times the size it is
# then resized to, so the resize filters as a full decode + resize would (Pillow's thumbnail keeps the same gap,
# reducing_gap=2). Decoding straight down to the target size leaves the filtering to the DCT scaling, and changed
# recall on real photos: Cambridge test at 160 x 160 from 320 x 320 JPEGs, untrained EfficientNet-Lite0 + GeM,
# R@1 55.2 with a 1/2 draft, 58.1 decoded in full (the reference computation decodes in full).
DRAFT_GAP = 2

# UnidentifiedImageError (not an image) is an OSError, as are a truncated or garbled stream
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    Image.DecompressionBombError,
)


def load_image(path: str, draft_size=None) -> Image.Image:
    """RGB image, with EXIF rotation applied; DataError naming the file if it cannot be decoded.
    ``draft_size`` (H, W), or a function of the image's (H, W) after rotation giving it: the size the image is
    about to be resized to. A JPEG is decoded directly at a power-of-two reduction that stays at least DRAFT_GAP
    times that large (draft mode: several times faster than decoding in full and then shrinking)."""
    try:
        with Image.open(path) as img:
            orientation = img.getexif().get(0x0112, 1)
            if draft_size and img.format == "JPEG":
                turned = orientation in (5, 6, 7, 8)  # stored rotated: EXIF turns it later
                if callable(draft_size):
                    w, h = img.size
                    draft_size = draft_size(*((w, h) if turned else (h, w)))
                h, w = draft_size
                if turned:
                    h, w = w, h
                img.draft("RGB", (w * DRAFT_GAP, h * DRAFT_GAP))
            img.load()
            if orientation not in (
                None,
                1,
            ):  # (each of these steps copies the image: only when needed)
                img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except FileNotFoundError:
        raise DataError(
            f"{path}: image not found; restore it, or rebuild data/gt (stage build_gt)"
        ) from None
    except (
        DECODE_ERRORS
    ) as exc:  # what Pillow raises on a file it cannot decode (fuzzed files included)
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise DataError(
            f"{path}: does not decode ({exc.__class__.__name__}: {detail}); replace it, or delete it "
            "and rebuild data/gt (stage build_gt)"
        ) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB. Pillow opens a 16-bit grey PNG or TIFF as mode I;16 (older Pillow: I) and its convert clips
    those values to 255, which turns a mid-grey picture white: they are scaled instead, value >> 8 (65535 ->
    255), as Pillow itself reads 16-bit colour PNGs (their high bytes). A 32-bit integer image (mode I from a
    TIFF) is taken as 16-bit too, its values clipped to 0..65535 first."""
    if img.mode == "RGB":
        return img
    if img.mode == "I" or img.mode.startswith("I;16"):
        pixels = np.clip(np.asarray(img), 0, 65535).astype(np.uint32) >> 8
        img = Image.fromarray(pixels.astype(np.uint8), "L")
    return img.convert("RGB")


class PlainJpeg:
    """A colour JPEG without EXIF rotation, read but not decoded, and the (H, W) Pillow's draft mode would
    decode it at; ``of`` gives None for anything else (load_image's case)."""

    def __init__(self, data: bytes, size: tuple):
        self.data, self.size = data, size

    @classmethod
    def of(cls, path: str, draft_size=None):
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            with Image.open(
                io.BytesIO(data)
            ) as img:  # the header only: format, mode, EXIF, draft size
                if (
                    img.format != "JPEG"
                    or img.mode != "RGB"
                    or img.getexif().get(0x0112, 1) not in (None, 1)
                ):
                    return None
                if callable(draft_size):  # (no EXIF rotation here: stored as shown)
                    draft_size = draft_size(img.height, img.width)
                if draft_size:
                    img.draft("RGB", (draft_size[1] * DRAFT_GAP, draft_size[0] * DRAFT_GAP))
                return cls(data, (img.height, img.width))
        except DECODE_ERRORS:  # unreadable or damaged: load_image names the problem
            return None

    def decode(self, out: np.ndarray | None = None) -> np.ndarray | None:
        """(H, W, 3) uint8 array (written into ``out`` when given); None if the stream turns out damaged."""
        h, w = self.size
        try:
            array = simplejpeg.decode_jpeg(
                self.data, colorspace="RGB", min_height=h, min_width=w, buffer=out
            )
        except DECODE_ERRORS:
            return None
        return array if array.shape == (h, w, 3) else None
