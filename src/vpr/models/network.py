"""The VPR network: backbone -> aggregator -> optional FC projection -> L2 normalisation.

A model is fully described by a small plain dict (``spec``) saved in every checkpoint, so
extraction and localisation rebuild it without reading params.yaml.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from vpr.models.aggregators import AGGREGATORS
from vpr.models.backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, feature_shape

__all__ = ["VPRNet", "model_spec", "check_spec", "build_model", "IMAGENET_MEAN", "IMAGENET_STD"]


class VPRNet(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        aggregator: nn.Module,
        descriptor_dim: int | None = None,
        normalize: bool = True,
    ):
        super().__init__()
        self.normalize = (
            normalize  # false: raw descriptors, as the course template tests them (model.normalize)
        )
        self.backbone = backbone
        self.aggregator = aggregator
        self.projection = (
            nn.Linear(aggregator.out_dim, descriptor_dim) if descriptor_dim else nn.Identity()
        )
        self.descriptor_dim = descriptor_dim or aggregator.out_dim
        # The input normalisation the backbone's weights expect (ImageNet statistics for most).
        self.mean = getattr(backbone, "mean", IMAGENET_MEAN)
        self.std = getattr(backbone, "std", IMAGENET_STD)

    def forward(self, images, return_features: bool = False):
        """L2-normalised descriptors; with ``return_features`` also the backbone's feature map (for loss terms
        that work on it, e.g. a domain classifier). Everything goes through ``forward`` so wrappers such as
        DistributedDataParallel see every use of the parameters."""
        features = self.backbone(images)
        descriptors = self.embedding(features)
        if self.normalize:
            descriptors = F.normalize(descriptors, p=2, dim=1)
        return (descriptors, features) if return_features else descriptors

    def embedding(self, features):
        """The global descriptor of a backbone feature map before its L2 normalisation (what VICReg's expander
        reads: on unit vectors its variance target could not be met)."""
        return self.projection(self.aggregator(features))


def model_spec(cfg, image_size) -> dict:
    """The plain-dict model description from the validated params (a vpr.config.Config, whose values are taken
    as they are; a raw params mapping is validated first, once)."""
    if isinstance(cfg, dict):
        from vpr.config import validate

        cfg = validate(cfg, ("backbone", "aggregator", "model"))
    return dict(
        backbone=cfg.raw["backbone"],
        backbone_settings=dict(cfg.settings("backbone")),
        aggregator=cfg.raw["aggregator"],
        aggregator_settings=dict(cfg.settings("aggregator")),
        descriptor_dim=cfg.model["descriptor_dim"],
        normalize=cfg.model["normalize"],
        image_size=list(image_size) if image_size else None,
    )


def check_spec(spec: dict) -> dict:
    """A spec from elsewhere (a checkpoint) checked by the schema: names known, settings complete (an older
    checkpoint gets the defaults of settings added since)."""
    return {
        **spec,
        "backbone_settings": BACKBONES.check(
            spec["backbone"], spec["backbone_settings"], "backbone"
        ),
        "aggregator_settings": AGGREGATORS.check(
            spec["aggregator"], spec["aggregator_settings"], "aggregator"
        ),
    }


def build_model(spec: dict) -> VPRNet:
    """The network of a validated spec (model_spec, or check_spec for one read from a file)."""
    backbone = BACKBONES.get(spec["backbone"], "backbone")(**spec["backbone_settings"])
    # native-size training (image_size null): aggregators see maps of any size; a fixed grid cannot be built
    channels, h, w = feature_shape(backbone, spec["image_size"] or (224, 224))
    aggregator = AGGREGATORS.get(spec["aggregator"], "aggregator")(
        channels, (h, w), **spec["aggregator_settings"]
    )
    if spec["image_size"] is None and hasattr(aggregator, "positions"):
        from vpr.errors import ConfigError

        raise ConfigError(
            f"train.image_size: {spec['aggregator']} needs a fixed training size (its grid of "
            "feature positions), not null"
        )
    return VPRNet(backbone, aggregator, spec.get("descriptor_dim"), spec.get("normalize", True))
