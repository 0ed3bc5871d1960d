"""The data switch: `data_profiles` applied with DVC's own -S override, and the checks of data/datasets keys."""

import copy

import pytest
import yaml

from tests.helpers import PARAMS, ROOT, with_change
from vpr.config import validate
from vpr.errors import ConfigError


def _switched(tmp_path, *overrides):
    """params.yaml after `dvc exp run -S <overrides>` (the very function DVC applies them with)."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    apply_overrides(str(path), list(overrides))
    return yaml.safe_load(path.read_text())


def test_the_shipped_data_section_is_the_synth_profile():
    assert PARAMS["data"] == PARAMS["data_profiles"]["synth"]


def test_one_override_switches_to_the_course_data(tmp_path):
    raw = _switched(tmp_path, "data=${data_profiles.course}")
    cfg = validate(raw)
    assert list(cfg.data.fetch) == ["gsv_xs", "sf_xs", "tokyo_xs"]
    assert (cfg.data.train, cfg.data.val) == ("gsv_xs/train", "sf_xs/val")
    assert cfg.data.test == {"sf_xs_test": "sf_xs/test", "tokyo_xs_test": "tokyo_xs/test"}
    assert cfg.data.night["tokyo_xs_test"]["name"] == "tokyo_night"
    assert all(
        cfg.datasets[n]["source"] == "url"
        and cfg.datasets[n]["url"].startswith("https://drive.google.com/")
        for n in cfg.data.fetch
    )
    assert raw["loss"] == PARAMS["loss"] and raw["train"] == PARAMS["train"]  # nothing else changes
    back = validate(_switched(tmp_path, "data=${data_profiles.synth}"))
    assert back.data == validate(copy.deepcopy(PARAMS)).data


def test_linking_a_local_copy_is_two_more_overrides(tmp_path):
    raw = _switched(
        tmp_path,
        "data=${data_profiles.course}",
        "datasets.sf_xs.source=path",
        "datasets.sf_xs.path=/data/sf_xs",
    )
    assert validate(raw).datasets["sf_xs"]["path"] == "/data/sf_xs"


@pytest.mark.parametrize(
    "path,value,message",
    [
        ("data.fetch", [], "data.fetch: must not be empty"),
        ("data.fetch", ["synth", "synth"], "data.fetch: expected a list of distinct dataset names"),
        ("data.fetch", ["synth", "moon"], "data.fetch: 'moon' is not in datasets"),
        (
            "data.fetch",
            ["gsv_xs"],
            "data.train: 'synth/train' is in dataset 'synth', which data.fetch does not list",
        ),
        (
            "data.night",
            {"nowhere": {}},
            "data.night.nowhere: no evaluation set 'nowhere' in data.test",
        ),
        (
            "data.night",
            {"synth_test": {"rule": "sun"}},
            "data.night.synth_test.rule: 'sun' is not one of",
        ),
        (
            "data_profiles.course.fetch",
            KeyError,
            "data_profiles.course: a profile replaces the whole data section",
        ),
        (
            "data_profiles.course.val",
            "sfxs/val",
            "data_profiles.course.val: 'sfxs/val' must be a folder under data/raw",
        ),
        ("datasets.sf_xs.sha256", "abc", "datasets.sf_xs.sha256: expected 64 hex digits or null"),
        (
            "datasets.sf_xs.source",
            "ftp",
            "datasets.sf_xs.source: 'ftp' is not one of: synthetic, url, path",
        ),
        (
            "gt.check_images",
            "pixels",
            "gt.check_images: 'pixels' is not one of: none, header, decode",
        ),
        ("gt.strict", "yes", "gt.strict: expected true or false"),
    ],
)
def test_bad_data_settings_give_one_clear_line(path, value, message):
    with pytest.raises(ConfigError) as err:
        validate(with_change(path, value))
    assert message in str(err.value) and "\n" not in str(err.value)
