"""Reference recipes: every value resolves as the README's table says, the dvc command carries them all, and
every recipe trains two steps on the miniature city (ImageNet weights off: they cannot be downloaded here)."""

import pytest

from tests.helpers import ROOT, eval_set, two_steps
from vpr import dvc_params, recipes
from vpr.config import KINDS, load_params, validate
from vpr.config.loader import entry_settings
from vpr.data.groundtruth import TrainingData, build_train_set

BASE = load_params(ROOT / "params.yaml")
PLURAL = {k.section: kind for kind, k in KINDS.items() if k.section not in ("augment", "eval")}


def resolve(cfg, key: str):
    """The value the pipeline will use for a dotted params key (the schema's defaults included)."""
    head, _, rest = key.partition(".")
    if not rest:
        return cfg.raw[head]
    if head in PLURAL:
        name, _, setting = rest.partition(".")
        return entry_settings(PLURAL[head], name, (cfg.raw.get(head) or {}).get(name))[setting]
    value = cfg.values[head]
    for part in rest.split("."):
        value = value[part]
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_recipe_value_resolves_as_its_table_says(name):
    cfg = validate(recipes.apply(BASE, name))
    for key, value, source in recipes.RECIPES[name].values:
        got = resolve(cfg, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, (key, source)
    assert all(
        source for _, _, source in recipes.RECIPES[name].values
    )  # every value names its reference


def test_the_docs_list_every_value_of_every_recipe():
    readme = (ROOT / "docs" / "recipes.md").read_text()
    for name in recipes.RECIPES:
        assert recipes.table(name) in readme, (
            f"run `python -m vpr.docs` to refresh the recipe tables ({name})"
        )


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_the_dvc_command_sets_every_value_and_keeps_pretrained_weights(name, capsys):
    assert recipes.main(["run", name, "--data", "course", "--dry-run", "--", "--temp"]) == 0
    command = capsys.readouterr().out
    assert command.startswith(f"dvc exp run -n {name} -S ")
    assert " -S 'data=${data_profiles.course}'" in command
    assert command.rstrip().endswith("--temp")
    for key, _, _ in recipes.RECIPES[name].values:
        assert f" {key}=" in command or f"'{key}=" in command, key
    assert ".pretrained=false" not in command
    assert "pretrained=false" in " ".join(recipes.overrides(name, pretrained=False))


@pytest.mark.parametrize("data", [None, "course", "cambridge"])
@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_dvc_set_param_writes_every_recipe_value_as_the_recipe_holds_it(name, data, tmp_path):
    """The -S items go through DVC's own parser (Hydra's override grammar) onto a copy of params.yaml, and
    params.yaml read back (as the stages read it) holds each value with its type: no quoted dict key,
    no float read back as a string (YAML 1.1 reads 1e-05 as one)."""
    import shutil

    from dvc.utils.hydra import apply_overrides

    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    apply_overrides(params, recipes.overrides(name, data=data))
    written = load_params(params)  # as the stages read it
    expected = recipes.apply(BASE, name)
    for key, _, _ in recipes.RECIPES[name].values:
        got = written
        for part in key.split("."):
            got = got[part]
        want = expected
        for part in key.split("."):
            want = want[part]
        assert got == want and type(got) is type(want), (key, got, want)
    profile = data or recipes.RECIPES[name].profile
    if profile:
        assert {**written["data"], "mining": None} == {
            **BASE["data_profiles"][profile],
            "mining": None,
        }
    for item in (recipes.RECIPES[name].data or {}).get(profile or "synth", ()):
        key, value = item.split("=", 1)
        got = written
        for part in key.split("."):
            got = got[part]
        assert got == dvc_params.load(value), (
            item
        )  # e.g. the triplet mining set, in the data section
    validate(load_params(params))


def _miniature(name, tiny_city):
    """The recipe with its sizes shrunk for a two-step CPU run on the miniature city."""
    raw = recipes.apply(BASE, name, pretrained=False)
    t = raw["train"]
    t.update(
        places_per_batch=4,
        images_per_place=2,
        num_workers=0,
        epochs=1,
        batches_per_epoch=2,
        amp=False,
    )
    if t["image_size"] is not None:
        t["image_size"] = [64, 64] if raw["aggregator"] == "mixvpr" else [48, 64]
    raw["methods"]["triplet_mining"].update(
        queries_per_epoch=4,
        cache_refresh_rate=4,
        queries_per_batch=2,
        negatives=2,
        negatives_sample=30,
    )
    raw["methods"]["cosplace"].update(min_images_per_class=2, batch_size=8, N=2, L=1, groups_num=2)
    raw["aggregators"]["mixvpr"].update(out_channels=32, out_rows=2)
    raw["synthetic"] = {k: v for k, v in raw["synthetic"].items() if k != "extra_sets"}
    cfg = validate(raw)
    data = TrainingData(
        build_train_set(tiny_city / "train"),
        mining=eval_set(tiny_city / "val") if cfg.train.method == "triplet_mining" else None,
    )
    return cfg, data


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_recipe_trains_two_steps_on_the_miniature_city(name, tiny_city):
    cfg, data = _miniature(name, tiny_city)
    recipe = two_steps(cfg, data)
    assert recipe.model.normalize == (
        name != "course_template"
    )  # the template tests raw descriptors


def test_a_recipe_made_for_a_data_profile_brings_it_unless_another_is_asked(capsys):
    assert recipes.main(["run", "real_photos", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(
        "dvc exp run -n real_photos -S 'data=${data_profiles.cambridge}'"
    )
    assert recipes.main(["run", "real_photos", "--data", "course", "--dry-run"]) == 0
    assert "data_profiles.course" in capsys.readouterr().out
