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
    yields (image, index).

    A draft decode rounds each side of the reduced image up, so its aspect ratio is not the file's: the policy
    sizes the output from the size the header gives (which the decoder passes to the draft-size function), as
    vpr.eval.prepare.size_batches does when it groups images of one output size into a batch."""

    def __init__(self, paths, prep):
        super().__init__(paths, prep, draft_size=prep.resized if prep.size else None)

    def __getitem__(self, i: int):
        header_sizes = []

        def draft_size(
            height, width
        ):  # called by the decoder with the header's size, after EXIF rotation
            header_sizes.append((height, width))
            return self.draft_size(height, width)

        image = load_rgb(self.paths[i], draft_size if self.draft_size else None)
        return self.transform(image, header_sizes[-1] if header_sizes else None), i


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
