from vpr.docs import END, START, registry_tables
from tests.helpers import ROOT


def test_readme_documents_every_registry_entry():
    readme = (ROOT / "README.md").read_text()
    section = readme.split(START, 1)[1].split(END, 1)[0]
    assert section.strip() == registry_tables().strip(), "run `python -m vpr.docs` to refresh the README tables"


def test_readme_documents_every_params_section_and_recipe_as_generated():
    from vpr.docs import RECIPES_END, RECIPES_START, SECTIONS_END, SECTIONS_START, recipe_tables, section_tables
    readme = (ROOT / "README.md").read_text()
    for start, end, body in ((SECTIONS_START, SECTIONS_END, section_tables()),
                             (RECIPES_START, RECIPES_END, recipe_tables())):
        assert readme.split(start, 1)[1].split(end, 1)[0].strip() == body.strip(), "run `python -m vpr.docs`"


def _same(a, b) -> bool:
    norm = lambda v: [norm(x) for x in v] if isinstance(v, (list, tuple)) else v   # noqa: E731
    return norm(a) == norm(b)


def test_params_yaml_ships_exactly_the_schema_defaults():
    """params.yaml, the README tables and the builders read one set of defaults: the schema's."""
    from vpr.config import KINDS, load_params
    from vpr.config.catalog import TOP_LEVEL_CHOICES
    from vpr.config.loader import SEED
    from vpr.config.sections import SECTIONS
    raw = load_params(ROOT / "params.yaml")
    wrong = []
    assert raw["seed"] == SEED.default
    for kind in TOP_LEVEL_CHOICES:
        if raw.get(kind) != KINDS[kind].default:
            wrong.append(f"{kind}: {raw.get(kind)!r} != {KINDS[kind].default!r}")
    indexes = KINDS["index"].entries
    for name, (schema, _) in SECTIONS.items():
        given = {k: v for k, v in (raw.get(name) or {}).items() if not (name == "eval" and k in indexes)}
        assert set(given) == set(schema), f"params.yaml {name}: keys differ from the schema"
        wrong += [f"{name}.{k}: {v!r} != {schema[k].default!r}" for k, v in given.items() if not _same(v, schema[k].default)]
    for kind, k in KINDS.items():
        section = raw.get(k.section) or {}
        if kind == "augmentation":
            continue    # a list of steps, each checked by test_config
        for entry, settings in section.items():
            if kind == "index" and entry not in indexes:
                continue
            schema = k.entries[entry].settings
            wrong += [f"{k.section}.{entry}.{key}: {v!r} != {schema[key].default!r}"
                      for key, v in (settings or {}).items() if not _same(v, schema[key].default)]
    assert not wrong, wrong
