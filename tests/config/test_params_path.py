"""From a params key to its builder: params.yaml -> its schema entry (vpr.config.choices / catalog, whose KINDS
table names the module that builds it) -> that module. Every value is validated once, when params.yaml is loaded:
the builders take the validated settings as they are (a plain mapping from a library caller is still checked)."""

import collections
import importlib

import pytest

from tests.helpers import ROOT
from vpr.config import KINDS, load_config, load_params, loader, validate
from vpr.errors import ConfigError


def test_loading_checks_each_settings_mapping_once(monkeypatch):
    seen = collections.Counter()
    check = loader.check_settings

    def counting(prefix, *args, **kwargs):
        seen[prefix] += 1
        return check(prefix, *args, **kwargs)

    monkeypatch.setattr(loader, "check_settings", counting)
    validate(load_params(ROOT / "params.yaml"))
    assert seen and max(seen.values()) == 1, [k for k, n in seen.items() if n > 1]


@pytest.fixture
def no_checks(monkeypatch):
    import vpr.registry

    def refuse(*args, **kwargs):
        raise AssertionError("validated settings checked again")

    monkeypatch.setattr(vpr.registry, "entry_settings", refuse)


def test_builders_take_validated_settings_as_they_are(no_checks):
    from vpr.models.network import model_spec
    from vpr.train.losses import LOSSES

    cfg = load_config(ROOT / "params.yaml", "train")
    assert (
        LOSSES.build(
            "circle", 4, 8, settings=validate({**cfg.raw, "loss": "circle"}).settings("loss")
        ).m
        == 0.4
    )
    spec = model_spec(cfg, (48, 64))
    assert spec["aggregator_settings"] == dict(cfg.settings("aggregator"))
    assert (
        type(spec["backbone_settings"]) is dict
    )  # plain: checkpoints store it (weights_only loading)


def test_a_library_callers_settings_are_still_checked():
    from vpr.train.losses import LOSSES

    assert LOSSES.build("circle", 4, 8, settings={"gamma": 10.0}).m == 0.4  # the default filled in
    with pytest.raises(ConfigError, match="losses.circle.m"):
        LOSSES.build("circle", 4, 8, settings={"m": 2.0})


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_schema_names_the_module_that_builds_each_entry(kind):
    from vpr.registry import Registry

    module = importlib.import_module(KINDS[kind].builders)
    (registry,) = [r for r in vars(module).values() if isinstance(r, Registry) and r.kind == kind]
    assert [name for name in KINDS[kind].entries if name not in registry] == []
