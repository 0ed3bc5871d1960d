import pytest
import torch

from tests.helpers import NETWORK_SIZE, network_spec
from vpr.models.aggregators import AGGREGATORS
from vpr.models.backbones import BACKBONES
from vpr.models.network import build_model


@pytest.mark.parametrize(
    "backbone,cut_at,channels",
    [("resnet18", "conv4", 256), ("resnet18", "conv5", 512), ("resnet50", "conv4", 1024)],
)
@pytest.mark.parametrize("aggregator", ["avg", "gem"])
def test_descriptors_have_the_right_size_and_unit_norm(backbone, cut_at, channels, aggregator):
    torch.manual_seed(0)
    model = build_model(network_spec(backbone, aggregator, cut_at=cut_at)).eval()
    with torch.no_grad():
        d = model(torch.randn(3, 3, *NETWORK_SIZE))
    assert d.shape == (3, channels) and model.descriptor_dim == channels
    assert torch.allclose(d.norm(dim=1), torch.ones(3), atol=1e-5)


def test_projection_to_descriptor_dim():
    model = build_model(network_spec(dim=128)).eval()
    with torch.no_grad():
        d = model(torch.randn(2, 3, *NETWORK_SIZE))
    assert d.shape == (2, 128) and torch.allclose(d.norm(dim=1), torch.ones(2), atol=1e-5)


def test_resnet18_conv4_has_stride_16():
    trunk = BACKBONES.build("resnet18", settings=dict(cut_at="conv4"))
    assert trunk(torch.zeros(1, 3, 96, 128)).shape == (1, 256, 6, 8)


def test_gem_p_receives_a_gradient_and_gem_with_p1_is_average():
    gem = AGGREGATORS.build("gem", 8, (4, 4), settings=dict(p=3.0))
    x = torch.rand(2, 8, 4, 4) + 0.1
    gem(x).sum().backward()
    assert gem.p.grad is not None and gem.p.grad.abs() > 0
    gem1 = AGGREGATORS.build("gem", 8, (4, 4), settings=dict(p=1.0))
    assert torch.allclose(gem1(x), x.mean(dim=(2, 3)), atol=1e-5)


def test_untrained_backbone_is_not_pretrained_by_default():
    assert BACKBONES.check("resnet18", None)["pretrained"] is False
