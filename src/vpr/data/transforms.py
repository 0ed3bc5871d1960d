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
from torchvision.transforms import v2

from vpr.errors import ConfigError
from vpr.models.backbones import IMAGENET_MEAN, IMAGENET_STD
from vpr.registry import Registry

AUGMENTATIONS = Registry("augmentation")


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
        self.p, self.scale, self.ratio, self.variant, self.value = (
            p,
            tuple(scale),
            tuple(ratio),
            variant,
            value,
        )

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
                out[..., top : top + h, left : left + w] = self.value * (
                    255 if img.dtype == torch.uint8 else 1
                )
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
        dev = x.device  # also runs on a GPU batch (train.augment_on: device)
        x = x * torch.tensor([0.8, 0.9, 1.15], device=dev).view(3, 1, 1)
        H, W = x.shape[-2:]
        n = int(torch.randint(0, self.lit_points + 1, ()).item())
        if n:
            ys = (torch.rand(n) * H * 0.7).to(dev)  # lights sit mostly above the street level
            xs = (torch.rand(n) * W).to(dev)
            radius = (0.8 + torch.rand(n) * max(1.0, H / 60)).to(dev)
            rows = torch.arange(H, device=dev).view(1, H, 1).float()
            cols = torch.arange(W, device=dev).view(1, 1, W).float()
            glow = torch.exp(
                -((rows - ys.view(-1, 1, 1)) ** 2 + (cols - xs.view(-1, 1, 1)) ** 2)
                / (2 * radius.view(-1, 1, 1) ** 2)
            ).amax(0)
            x = x + glow * torch.tensor([1.0, 0.85, 0.55], device=dev).view(3, 1, 1)
        x = x + torch.randn(x.shape, device=dev) * self.noise
        return back(x)


@AUGMENTATIONS.register()
def randaugment(*, num_ops: int, magnitude: int):
    return v2.RandAugment(num_ops=num_ops, magnitude=magnitude)


@AUGMENTATIONS.register()
def color_jitter(*, brightness: float, contrast: float, saturation: float, hue: float):
    return v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)


@AUGMENTATIONS.register()
def brightness(*, min: float, max: float, p: float):  # noqa: A002 - params.yaml names
    return Brightness(min, max, p)


@AUGMENTATIONS.register()
def random_erasing(*, p: float, scale: list, ratio: list, variant: str, value: float):
    return RegionErasing(p, scale, ratio, variant, value)


@AUGMENTATIONS.register()
def random_perspective(*, distortion_scale: float, p: float):
    return v2.RandomPerspective(distortion_scale=distortion_scale, p=p)


@AUGMENTATIONS.register()
def random_resized_crop(*, scale: list, ratio: list):
    return _SizedCrop(tuple(scale), tuple(ratio))


class _SizedCrop(nn.Module):
    """Placeholder bound to the training image size when the pipeline is assembled."""

    def __init__(self, scale, ratio):
        super().__init__()
        self.scale, self.ratio = scale, ratio

    def bind(self, image_size):
        if not image_size:
            raise ConfigError(
                "augment: random_resized_crop needs a training size; set train.image_size "
                "(null = native size has none)"
            )
        return v2.RandomResizedCrop(
            tuple(image_size), scale=self.scale, ratio=self.ratio, antialias=True
        )


@AUGMENTATIONS.register()
def horizontal_flip(*, p: float):
    return v2.RandomHorizontalFlip(p=p)


@AUGMENTATIONS.register()
def synthetic_night(*, p: float, gamma: list, brightness: list, lit_points: int, noise: float):
    return SyntheticNight(p, gamma, brightness, lit_points, noise)


# Augmentations with a Pillow implementation (C code on the whole image): in loader workers they run on the
# PIL image, several times faster than torchvision's uint8-tensor kernels (RandAugment(3) at 320x320: about
# 3.5x). Same random draws either way; pixels differ by rounding only.
PIL_CAPABLE = (
    v2.RandAugment,
    v2.ColorJitter,
    v2.RandomPerspective,
    v2.RandomResizedCrop,
    v2.RandomHorizontalFlip,
    Brightness,
)


def split_for_pil(steps: list) -> tuple[list, list]:
    """(leading steps that can run on a PIL image, the rest, which run on the tensor)."""
    n = 0
    while n < len(steps) and isinstance(steps[n], PIL_CAPABLE):
        n += 1
    return steps[:n], steps[n:]


def augmentations(augment, image_size) -> list:
    """The configured augmentations, in order, ready to apply to uint8 image tensors of ``image_size``."""
    from vpr.config.loader import check_augment

    steps = []
    for name, settings in check_augment(augment):
        t = AUGMENTATIONS.get(name)(**settings)
        steps.append(t.bind(image_size) if hasattr(t, "bind") else t)
    return steps


def train_transform(augment, image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """Decode -> resize to ``image_size`` (H, W; None: native size) -> augmentations in order -> float, normalised."""
    resize = [v2.Resize(tuple(image_size), antialias=True)] if image_size else []
    return v2.Compose(
        [
            v2.ToImage(),
            *resize,
            *augmentations(augment, image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def eval_transform(image_size=None, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """Resize to ``image_size`` (H, W; None keeps the native size) -> float, normalised."""
    steps = [v2.ToImage()]
    if image_size:
        steps.append(v2.Resize(tuple(image_size), antialias=True))
    return v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
