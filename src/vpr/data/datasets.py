"""Datasets over image paths: evaluation lists and training places."""
from __future__ import annotations

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from vpr.errors import DataError


def load_image(path: str) -> Image.Image:
    """RGB image, with EXIF rotation applied; DataError naming the file if it cannot be decoded."""
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc.__class__.__name__}: {exc}); "
                        f"delete or re-download the file") from None


class ImageList(Dataset):
    """Images in a fixed order, transformed for inference; yields (image, index)."""

    def __init__(self, paths, transform):
        self.paths = [str(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(load_image(self.paths[i])), i


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
