"""What a new user still hit (issue 22, the newcomer part): compare's baseline is the committed params and is
named, a verdict from one seed says so in its cell, the README says how to leave a `dvc exp run` variant and its
`dvc exp show` commands show the `loss` column, the report gives the training time, no dependency file is empty,
epoch 0 reads as the untrained model, and `dvc plots diff` draws offline with each query's pictures paired."""
import re

import yaml

from tests.conftest import ROOT

TEMPLATE = ROOT / "reports/templates/dvc_plots.html"
EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*['\"]?\s*(https?:)?//", re.I)


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}")
    return text[start:text.index("\n## ", start + 1)]


# --- 6. no dependency file is empty (DVC warns about each one, every run) ------------------------------------

def _dependency_files():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = {d if isinstance(d, str) else next(iter(d)) for s in stages.values() for d in s.get("do", s)["deps"]}
    for dep in sorted(d for d in deps if "${" not in d):
        path = ROOT / dep
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_no_file_a_stage_depends_on_is_empty():
    files = sorted(set(_dependency_files()))
    assert len(files) > 50 and ROOT / "src/vpr/data/__init__.py" in files
    empty = [str(p.relative_to(ROOT)) for p in files if p.stat().st_size == 0]
    assert not empty, f"DVC warns about each empty dependency on every run; give them a docstring: {empty}"
