import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[1]
# the stage scripts as a user runs them: no byte-code written next to the copies, no progress bars
STAGE_ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TQDM_DISABLE": "1"}

# A miniature embedded city: same generator as the default, a few hundred small images.
TINY_SYNTHETIC = dict(image_size=(48, 64), train_cities=2, train_blocks=3, places_per_city=20, val_blocks=2,
                      test_blocks=2, val_queries=20, test_queries=24,
                      query_aspects=((4, 3), (3, 4), (16, 9), (1, 1)))   # phone photos of several shapes


def eval_set(set_dir, **options):
    """Ground truth of ``<set_dir>/{database,queries}`` as the build_gt stage computes it (vpr.data.layouts)."""
    from vpr.data.layouts import build_eval_index
    return build_eval_index(str(set_dir), **options)[0]


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory):
    """Path of a generated miniature dataset root (train/, val/, test/)."""
    from vpr.data.synthetic.generate import SyntheticSpec, generate
    root = tmp_path_factory.mktemp("synth") / "synth"
    generate(root, SyntheticSpec.of(TINY_SYNTHETIC), workers=1)
    return root


def stage_sandbox(box, raw):
    """A copy of the stage scripts and the library in ``box``, with ``raw`` as its params.yaml (a string: the
    file's text as is) and a previous models/best.pt: a stage run there must leave all of it as it was."""
    for d in ("stages", "src"):
        shutil.copytree(ROOT / d, box / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    if isinstance(raw, str):
        (box / "params.yaml").write_text(raw)
    else:
        with open(box / "params.yaml", "w") as fh:
            yaml.safe_dump(raw, fh)
    (box / "models").mkdir()
    (box / "models" / "best.pt").write_bytes(b"previous model")
    return box


def files_under(box):
    """Every path under ``box`` with its size (files) or None (folders), byte-code aside."""
    return sorted((str(p.relative_to(box)), p.stat().st_size if p.is_file() else None)
                  for p in box.rglob("*") if "__pycache__" not in p.parts)


def run_unchanged(box, *args, timeout=180):
    """Run ``python <args>`` in ``box``; the completed process. Nothing may change there."""
    before = files_under(box)
    proc = subprocess.run([sys.executable, *args], cwd=box, capture_output=True, text=True, timeout=timeout,
                          env=STAGE_ENV)
    assert files_under(box) == before, "the stage wrote or removed files"
    return proc


def one_line(lines, start):
    """The only line of ``lines`` (stderr of a stage), which starts with ``start``."""
    assert len(lines) == 1 and lines[0].startswith(start), "\n".join(lines)
    return lines[0]
