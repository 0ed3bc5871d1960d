"""Image transforms (torchvision v2): the augmentation registry and the train / eval pipelines.

``augment`` in params.yaml is an ordered list; each item names a registry entry and its settings:
    augment:
      - {name: color_jitter, brightness: 0.4}
      - {name: randaugment, num_ops: 3}
"""
from __future__ import annotations

import torch

from vpr.compat import torchvision  # noqa: F401  (shim first)
from torchvision.transforms import v2
from vpr.errors import ConfigError
from vpr.models.network import IMAGENET_MEAN, IMAGENET_STD
from vpr.registry import Registry, require

AUGMENTATIONS = Registry("augmentation", "augment")


@AUGMENTATIONS.register(paper="Cubuk et al., RandAugment, NeurIPS 2020")
def randaugment(*, num_ops: int = 2, magnitude: int = 9):
    """RandAugment: num_ops random ops of the given magnitude (the course uses num_ops 3)."""
    require(num_ops >= 0, "augment.randaugment.num_ops", f"must be >= 0, got {num_ops}")
    require(0 <= magnitude <= 30, "augment.randaugment.magnitude", f"must be in [0, 30], got {magnitude}")
    return v2.RandAugment(num_ops=num_ops, magnitude=magnitude)


@AUGMENTATIONS.register()
def color_jitter(*, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0):
    """Random brightness, contrast, saturation and hue changes."""
    for k, v in dict(brightness=brightness, contrast=contrast, saturation=saturation).items():
        require(v >= 0, f"augment.color_jitter.{k}", f"must be >= 0, got {v}")
    require(0 <= hue <= 0.5, "augment.color_jitter.hue", f"must be in [0, 0.5], got {hue}")
    return v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)


@AUGMENTATIONS.register()
def random_resized_crop(*, scale: list = (0.6, 1.0), ratio: list = (1.2, 1.45), size: list = None):
    """Random crop of a fraction ``scale`` of the area, resized back (size: null = training size)."""
    require(0 < scale[0] <= scale[1] <= 1, "augment.random_resized_crop.scale", f"need 0 < lo <= hi <= 1, got {scale}")
    return _SizedCrop(tuple(scale), tuple(ratio), size)


class _SizedCrop(torch.nn.Module):
    """RandomResizedCrop whose output size defaults to the training image size (set later)."""

    def __init__(self, scale, ratio, size):
        super().__init__()
        self.scale, self.ratio, self.size = scale, ratio, size

    def bind(self, image_size):
        return v2.RandomResizedCrop(tuple(self.size or image_size), scale=self.scale, ratio=self.ratio,
                                    antialias=True)


def _item_name(item, i):
    if not isinstance(item, dict) or "name" not in item:
        raise ConfigError(f"augment[{i}]: expected a mapping with a 'name' key, e.g. {{name: randaugment}}, "
                          f"got {item!r}")
    return item["name"]


def check_augment(items) -> list[tuple[str, dict]]:
    """Validate the ``augment`` list: known names, known settings."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError(f"augment: expected a list of {{name: ..., setting: value}} items, got {items!r}")
    out = []
    for i, item in enumerate(items):
        name = _item_name(item, i)
        settings = {k: v for k, v in item.items() if k != "name"}
        AUGMENTATIONS.get(name, key=f"augment[{i}].name")
        out.append((name, AUGMENTATIONS.check(name, settings, key=f"augment[{i}]")))
    return out


def train_transform(augment, image_size) -> v2.Compose:
    """Decode -> resize to ``image_size`` (H, W) -> augmentations in order -> float, ImageNet-normalised."""
    steps = [v2.ToImage(), v2.Resize(tuple(image_size), antialias=True)]
    for name, settings in check_augment(augment):
        t = AUGMENTATIONS.get(name)(**settings)
        steps.append(t.bind(image_size) if hasattr(t, "bind") else t)
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


def eval_transform(image_size=None) -> v2.Compose:
    """Resize to ``image_size`` (H, W; None keeps the native size) -> float, ImageNet-normalised."""
    steps = [v2.ToImage()]
    if image_size:
        steps.append(v2.Resize(tuple(image_size), antialias=True))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)
