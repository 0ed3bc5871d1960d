"""Backbones: CNN trunks that map an image batch to a feature map (B, C, h, w).

Each builder returns an ``nn.Module`` with an ``out_channels`` attribute.
"""
from __future__ import annotations

import torch
from torch import nn

from vpr.compat import torchvision
from vpr.errors import ConfigError
from vpr.registry import Registry, require

BACKBONES = Registry("backbone", "backbones")

_RESNET_CHANNELS = {"resnet18": (256, 512), "resnet34": (256, 512), "resnet50": (1024, 2048),
                    "resnet101": (1024, 2048)}


def torchvision_weights(arch: str, pretrained: bool, key: str):
    """ImageNet weights enum for ``arch`` if ``pretrained``; fails in one line when they cannot be had."""
    if not pretrained:
        return None
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        weights.get_state_dict(progress=False, check_hash=True)  # cached, or downloaded now
    except Exception as exc:  # noqa: BLE001 - any download failure is the same message to the user
        raise ConfigError(f"{key}.pretrained: torchvision's ImageNet weights for {arch} could not be loaded "
                          f"({type(exc).__name__}: no internet?); set pretrained: false or put "
                          f"{weights.url.rsplit('/', 1)[-1]} in $TORCH_HOME/hub/checkpoints") from None
    return weights


def _resnet(arch: str, pretrained: bool, cut_at: str) -> nn.Module:
    key = f"backbones.{arch}"
    require(cut_at in ("conv4", "conv5"), f"{key}.cut_at", f"'{cut_at}' is not conv4 or conv5")
    net = getattr(torchvision.models, arch)(weights=torchvision_weights(arch, pretrained, key))
    layers = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3]
    if cut_at == "conv5":
        layers.append(net.layer4)
    trunk = nn.Sequential(*layers)
    trunk.out_channels = _RESNET_CHANNELS[arch][cut_at == "conv5"]
    return trunk


@BACKBONES.register(paper="He et al., Deep Residual Learning, CVPR 2016")
def resnet18(*, pretrained: bool = False, cut_at: str = "conv4") -> nn.Module:
    """ResNet-18 trunk cut after conv4 (256 ch, stride 16) or conv5 (512 ch)."""
    return _resnet("resnet18", pretrained, cut_at)


@BACKBONES.register(paper="He et al., Deep Residual Learning, CVPR 2016")
def resnet50(*, pretrained: bool = False, cut_at: str = "conv4") -> nn.Module:
    """ResNet-50 trunk cut after conv4 (1024 ch, stride 16) or conv5 (2048 ch)."""
    return _resnet("resnet50", pretrained, cut_at)


def feature_shape(backbone: nn.Module, image_size) -> tuple[int, int, int]:
    """(C, h, w) of the backbone's output for an input of ``image_size`` (H, W)."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, *image_size))
    backbone.train(was_training)
    if out.ndim != 4:
        raise ConfigError(f"backbone output has shape {tuple(out.shape)}, expected a (B, C, h, w) feature map")
    return tuple(out.shape[1:])
