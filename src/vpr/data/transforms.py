"""Image transforms (torchvision v2): the augmentation registry and the train / eval pipelines.

``augment`` in params.yaml is an ordered list; each item names a registry entry and its settings:
    augment:
      - {name: brightness, min: 0.3, max: 1.0, p: 0.3}      # the reports' "night" recipe
      - {name: random_erasing, variant: hard}              # occluders in the lower half
      - {name: randaugment, num_ops: 3}
Augmentations run on uint8 image tensors after the resize to the training size; custom ones draw from
torch's generator, so DataLoader worker seeding makes them reproducible.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vpr.compat import torchvision  # noqa: F401  (shim first)
from torchvision.transforms import v2
from vpr.errors import ConfigError
from vpr.models.backbones import IMAGENET_MEAN, IMAGENET_STD
from vpr.registry import Registry, require

AUGMENTATIONS = Registry("augmentation", "augment")


def _to_float(img: torch.Tensor):
    """(float image in [0, 1], function back to the input dtype)."""
    if img.dtype == torch.uint8:
        return img.float() / 255, lambda x: (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return img, lambda x: x.clamp(0, 1)


def _rand(low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * torch.rand(()).item()


class Brightness(nn.Module):
    """Multiply brightness by a factor drawn in [low, high] (low == high: a fixed factor), with probability p."""

    def __init__(self, low: float, high: float, p: float):
        super().__init__()
        self.low, self.high, self.p = low, high, p

    def forward(self, img):
        if torch.rand(()).item() >= self.p:
            return img
        return v2.functional.adjust_brightness(img, _rand(self.low, self.high))


class RegionErasing(nn.Module):
    """Random erasing whose rectangle is drawn anywhere (standard), only in the lower half (hard), or in the
    lower half three times out of four (soft): occluders in street photos are mostly cars and people."""

    def __init__(self, p: float, scale, ratio, variant: str, value: float):
        super().__init__()
        self.p, self.scale, self.ratio, self.variant, self.value = p, tuple(scale), tuple(ratio), variant, value

    def forward(self, img):
        if torch.rand(()).item() >= self.p:
            return img
        H, W = img.shape[-2:]
        if self.variant == "standard":
            band = (0, H)
        elif self.variant == "hard" or torch.rand(()).item() < 0.75:
            band = (H // 2, H)
        else:
            band = (0, H // 2)
        band_top, band_h = band[0], band[1] - band[0]
        for _ in range(10):
            area = H * W * _rand(*self.scale)
            aspect = math.exp(_rand(math.log(self.ratio[0]), math.log(self.ratio[1])))
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < h <= band_h and 0 < w <= W:
                top = band_top + int(torch.randint(0, band_h - h + 1, ()).item())
                left = int(torch.randint(0, W - w + 1, ()).item())
                out = img.clone()
                out[..., top:top + h, left:left + w] = self.value * (255 if img.dtype == torch.uint8 else 1)
                return out
        return img


class SyntheticNight(nn.Module):
    """Turn a day image into a plausible night shot: darken with a gamma, cool the white balance, add lit
    points (windows, lamps) and sensor noise."""

    def __init__(self, p: float, gamma, brightness, lit_points: int, noise: float):
        super().__init__()
        self.p, self.gamma, self.brightness = p, tuple(gamma), tuple(brightness)
        self.lit_points, self.noise = lit_points, noise

    def forward(self, img):
        if torch.rand(()).item() >= self.p:
            return img
        x, back = _to_float(img)
        x = x.pow(_rand(*self.gamma)) * _rand(*self.brightness)
        dev = x.device                            # also runs on a GPU batch (train.augment_on: device)
        x = x * torch.tensor([0.8, 0.9, 1.15], device=dev).view(3, 1, 1)
        H, W = x.shape[-2:]
        n = int(torch.randint(0, self.lit_points + 1, ()).item())
        if n:
            ys = (torch.rand(n) * H * 0.7).to(dev)          # lights sit mostly above the street level
            xs = (torch.rand(n) * W).to(dev)
            radius = (0.8 + torch.rand(n) * max(1.0, H / 60)).to(dev)
            rows = torch.arange(H, device=dev).view(1, H, 1).float()
            cols = torch.arange(W, device=dev).view(1, 1, W).float()
            glow = torch.exp(-((rows - ys.view(-1, 1, 1)) ** 2 + (cols - xs.view(-1, 1, 1)) ** 2)
                             / (2 * radius.view(-1, 1, 1) ** 2)).amax(0)
            x = x + glow * torch.tensor([1.0, 0.85, 0.55], device=dev).view(3, 1, 1)
        x = x + torch.randn(x.shape, device=dev) * self.noise
        return back(x)


def _prob(name: str, p: float) -> None:
    require(0 <= p <= 1, f"augment.{name}.p", f"must be a probability in [0, 1], got {p}")


def _range(key: str, pair, low: float = 0.0, high: float = math.inf) -> None:
    require(len(pair) == 2 and low <= pair[0] <= pair[1] <= high, key,
            f"must be [min, max] with {low} <= min <= max <= {high}, got {list(pair)}")


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


@AUGMENTATIONS.register(paper="course reports: darkened training images for night queries")
def brightness(*, min: float = 0.3, max: float = 1.0, p: float = 0.5):  # noqa: A002 - params.yaml names
    """Brightness factor drawn in [min, max] (min = max: a fixed factor), applied with probability p."""
    _range("augment.brightness.min/max", (min, max), 0.0)
    _prob("brightness", p)
    return Brightness(min, max, p)


@AUGMENTATIONS.register(paper="Zhong et al., Random Erasing Data Augmentation, AAAI 2020")
def random_erasing(*, p: float = 0.5, scale: list = (0.02, 0.2), ratio: list = (0.3, 3.3), variant: str = "standard",
                   value: float = 0.0):
    """Erase a random rectangle: variant standard (anywhere), hard (lower half only), soft (lower:upper 3:1)."""
    _prob("random_erasing", p)
    _range("augment.random_erasing.scale", scale, 0.0, 1.0)
    _range("augment.random_erasing.ratio", ratio, 1e-3)
    require(variant in ("standard", "hard", "soft"), "augment.random_erasing.variant",
            f"'{variant}' is not standard, hard or soft")
    require(0 <= value <= 1, "augment.random_erasing.value", f"must be in [0, 1], got {value}")
    return RegionErasing(p, scale, ratio, variant, value)


@AUGMENTATIONS.register()
def random_perspective(*, distortion_scale: float = 0.3, p: float = 0.5):
    """Random perspective warp (viewpoint change)."""
    require(0 <= distortion_scale <= 1, "augment.random_perspective.distortion_scale",
            f"must be in [0, 1], got {distortion_scale}")
    _prob("random_perspective", p)
    return v2.RandomPerspective(distortion_scale=distortion_scale, p=p)


@AUGMENTATIONS.register()
def random_resized_crop(*, scale: list = (0.6, 1.0), ratio: list = (1.2, 1.45)):
    """Random crop of a fraction ``scale`` of the area with aspect in ``ratio``, resized to the training size."""
    _range("augment.random_resized_crop.scale", scale, 1e-3, 1.0)
    _range("augment.random_resized_crop.ratio", ratio, 1e-3)
    return _SizedCrop(tuple(scale), tuple(ratio))


class _SizedCrop(nn.Module):
    """Placeholder bound to the training image size when the pipeline is assembled."""

    def __init__(self, scale, ratio):
        super().__init__()
        self.scale, self.ratio = scale, ratio

    def bind(self, image_size):
        if not image_size:
            raise ConfigError("augment: random_resized_crop needs a training size; set train.image_size "
                              "(null = native size has none)")
        return v2.RandomResizedCrop(tuple(image_size), scale=self.scale, ratio=self.ratio, antialias=True)


@AUGMENTATIONS.register()
def horizontal_flip(*, p: float = 0.5):
    """Mirror the image left-right (a street seen from the other side of the road looks mirrored)."""
    _prob("horizontal_flip", p)
    return v2.RandomHorizontalFlip(p=p)


@AUGMENTATIONS.register(paper="course reports: day-to-night style transfer, here a hand-made approximation")
def synthetic_night(*, p: float = 0.3, gamma: list = (1.5, 2.5), brightness: list = (0.3, 0.6),
                    lit_points: int = 12, noise: float = 0.04):
    """Darken with a gamma, cool the colour, add lit points and noise."""
    _prob("synthetic_night", p)
    _range("augment.synthetic_night.gamma", gamma, 0.1)
    _range("augment.synthetic_night.brightness", brightness, 0.0, 1.0)
    require(lit_points >= 0, "augment.synthetic_night.lit_points", f"must be >= 0, got {lit_points}")
    require(noise >= 0, "augment.synthetic_night.noise", f"must be >= 0, got {noise}")
    return SyntheticNight(p, gamma, brightness, lit_points, noise)


def check_augment(items) -> list[tuple[str, dict]]:
    """Validate the ``augment`` list: known names, known settings, possible values."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError(f"augment: expected a list of {{name: ..., setting: value}} items, got {items!r}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"augment[{i}]: expected a mapping with a 'name' key, e.g. {{name: randaugment}}, "
                              f"got {item!r}")
        name = item["name"]
        settings = {k: v for k, v in item.items() if k != "name"}
        AUGMENTATIONS.get(name, key=f"augment[{i}].name")
        settings = AUGMENTATIONS.check(name, settings, key=f"augment[{i}]")
        AUGMENTATIONS.get(name)(**settings)   # runs the builder's range checks
        out.append((name, settings))
    return out


def augmentations(augment, image_size) -> list:
    """The configured augmentations, in order, ready to apply to uint8 image tensors of ``image_size``."""
    steps = []
    for name, settings in check_augment(augment):
        t = AUGMENTATIONS.get(name)(**settings)
        steps.append(t.bind(image_size) if hasattr(t, "bind") else t)
    return steps


def train_transform(augment, image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """Decode -> resize to ``image_size`` (H, W; None: native size) -> augmentations in order -> float, normalised."""
    resize = [v2.Resize(tuple(image_size), antialias=True)] if image_size else []
    return v2.Compose([v2.ToImage(), *resize,
                       *augmentations(augment, image_size),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def uint8_transform(image_size=None) -> v2.Compose:
    """PIL image -> uint8 tensor, resized to ``image_size`` (H, W; None keeps the native size): the part of
    eval_transform that runs in loader workers (float conversion and normalisation happen on the batch)."""
    steps = [v2.ToImage()]
    if image_size:
        steps.append(v2.Resize(tuple(image_size), antialias=True))
    return v2.Compose(steps)


def eval_transform(image_size=None, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """Resize to ``image_size`` (H, W; None keeps the native size) -> float, normalised."""
    steps = [v2.ToImage()]
    if image_size:
        steps.append(v2.Resize(tuple(image_size), antialias=True))
    return v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
