"""Datasets over image paths: evaluation lists and training places."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from vpr.data.images import PlainJpeg, load_image


def load_rgb(path: str, draft_size=None) -> torch.Tensor:
    """load_image's pixels as a uint8 (3, H, W) tensor, a view of an (H, W, 3) array (as torchvision's
    pil_to_tensor gives). ``draft_size``: as load_image's. A plain JPEG (colour, no EXIF rotation) is decoded
    by libjpeg-turbo straight into the array (simplejpeg): Pillow's very pixels at Pillow's draft scale,
    without Pillow's image object and its copies; anything else goes through load_image."""
    jpeg = PlainJpeg.of(path, draft_size)
    array = jpeg.decode() if jpeg else None
    if array is None:
        array = np.array(load_image(path, draft_size))
    return torch.from_numpy(array).permute(2, 0, 1)


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
    decoded in draft mode at the size the policy resizes them to (plain JPEGs by libjpeg-turbo, load_rgb);
    yields (image, index)."""

    def __init__(self, paths, prep):
        super().__init__(paths, prep, draft_size=prep.resized if prep.size else None)

    def __getitem__(self, i: int):
        return self.transform(load_rgb(self.paths[i], self.draft_size)), i


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
