"""Datasets over image paths: evaluation lists and training places."""
from __future__ import annotations

import struct

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from vpr.errors import DataError

# UnidentifiedImageError (not an image) is an OSError, as are a truncated or garbled stream
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, Image.DecompressionBombError)


def load_image(path: str, draft_size=None) -> Image.Image:
    """RGB image, with EXIF rotation applied; DataError naming the file if it cannot be decoded.
    ``draft_size`` (H, W), or a function of the image's (H, W) after rotation giving it: a JPEG is decoded
    directly at a power-of-two reduction that stays at least that large (draft mode: several times faster
    than decoding in full and then shrinking)."""
    try:
        with Image.open(path) as img:
            orientation = img.getexif().get(0x0112, 1)
            if draft_size and img.format == "JPEG":
                turned = orientation in (5, 6, 7, 8)   # stored rotated: EXIF turns it later
                if callable(draft_size):
                    w, h = img.size
                    draft_size = draft_size(*((w, h) if turned else (h, w)))
                h, w = draft_size
                if turned:
                    h, w = w, h
                img.draft("RGB", (w, h))
            img.load()
            if orientation not in (None, 1):      # (each of these steps copies the image: only when needed)
                img = ImageOps.exif_transpose(img)
            return img if img.mode == "RGB" else img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: image not found; restore it, or rebuild data/gt (stage build_gt)") from None
    except DECODE_ERRORS as exc:   # what Pillow raises on a file it cannot decode (fuzzed files included)
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise DataError(f"{path}: does not decode ({exc.__class__.__name__}: {detail}); replace it, or delete it "
                        "and rebuild data/gt (stage build_gt)") from None


class ImageList(Dataset):
    """Images in a fixed order, transformed for inference; yields (image, index). ``draft_size``: see load_image."""

    def __init__(self, paths, transform, draft_size=None):
        self.paths = [str(p) for p in paths]
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(load_image(self.paths[i], self.draft_size)), i


class PreparedImages(ImageList):
    """Images as uint8 network inputs by an image-preparation policy (vpr.eval.prepare.ImagePrep), JPEGs
    decoded in draft mode at the size the policy resizes them to; yields (image, index)."""

    def __init__(self, paths, prep):
        super().__init__(paths, prep, draft_size=prep.resized if prep.size else None)


class PlaceImages(Dataset):
    """Training images with their place label; yields (image, place)."""

    def __init__(self, paths, place_of_image, transform):
        self.paths = [str(p) for p in paths]
        self.labels = torch.as_tensor(place_of_image, dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(load_image(self.paths[i])), self.labels[i]
