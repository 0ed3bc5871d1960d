"""The VPR network: backbone -> aggregator -> optional FC projection -> L2 normalisation.

A model is fully described by a small plain dict (``spec``) saved in every checkpoint, so
extraction and localisation rebuild it without reading params.yaml.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from vpr.models.aggregators import AGGREGATORS
from vpr.models.backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, feature_shape

__all__ = ["VPRNet", "model_spec", "build_model", "IMAGENET_MEAN", "IMAGENET_STD"]


class VPRNet(nn.Module):
    def __init__(self, backbone: nn.Module, aggregator: nn.Module, descriptor_dim: int | None = None,
                 normalize: bool = True):
        super().__init__()
        self.normalize = normalize   # false: raw descriptors, as the course template tests them (model.normalize)
        self.backbone = backbone
        self.aggregator = aggregator
        self.projection = nn.Linear(aggregator.out_dim, descriptor_dim) if descriptor_dim else nn.Identity()
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


def model_spec(params: dict, image_size) -> dict:
    """The plain-dict model description from params.yaml (validated)."""
    from vpr.config.loader import check_settings
    from vpr.config.sections import MODEL
    model = check_settings("model", MODEL, params.get("model"))
    backbone, aggregator = params["backbone"], params["aggregator"]
    return dict(
        backbone=backbone,
        backbone_settings=BACKBONES.check(backbone, (params.get("backbones") or {}).get(backbone)),
        aggregator=aggregator,
        aggregator_settings=AGGREGATORS.check(aggregator, (params.get("aggregators") or {}).get(aggregator)),
        descriptor_dim=model["descriptor_dim"], normalize=model["normalize"],
        image_size=list(image_size) if image_size else None)


def build_model(spec: dict) -> VPRNet:
    backbone = BACKBONES.build(spec["backbone"], settings=spec["backbone_settings"], key="backbone")
    # native-size training (image_size null): aggregators see maps of any size; a fixed grid cannot be built
    channels, h, w = feature_shape(backbone, spec["image_size"] or (224, 224))
    aggregator = AGGREGATORS.build(spec["aggregator"], channels, (h, w), settings=spec["aggregator_settings"],
                                   key="aggregator")
    if spec["image_size"] is None and hasattr(aggregator, "positions"):
        from vpr.errors import ConfigError
        raise ConfigError(f"train.image_size: {spec['aggregator']} needs a fixed training size (its grid of "
                          "feature positions), not null")
    return VPRNet(backbone, aggregator, spec.get("descriptor_dim"), spec.get("normalize", True))
