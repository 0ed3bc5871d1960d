import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("TQDM_DISABLE", "1")

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


# The pipeline's params for end-to-end DVC runs on the miniature city (tests/test_pipeline.py and others).
TINY = {
    "synthetic": {k: list(v) if isinstance(v, tuple) else v for k, v in TINY_SYNTHETIC.items()},
    "train": {"epochs": 1, "image_size": [48, 64], "places_per_batch": 8, "images_per_place": 4, "num_workers": 0},
    "extract": {"image_size": [48, 64], "batch_size": 32, "num_workers": 0},
    "viz": {"num_queries": 3, "curve_max_n": 20},
}


def merge(base, override):
    """``override`` merged into ``base`` (nested dicts key by key), in place."""
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


def run_checked(args, cwd):
    """stdout + stderr of ``args`` run in ``cwd`` (a pipeline copy: torch forbidden in light stages, git identity
    set); fails the test with the output's tail when the command fails."""
    env = {**os.environ, "TQDM_DISABLE": "1", "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests/forbid_torch"), os.environ.get("PYTHONPATH", "")]),
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def dvc(*args, cwd):
    return run_checked([sys.executable, "-m", "dvc", *args], cwd)


def ran_stages(output):
    """Names of the stages a dvc repro / exp run output says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def pipeline_repo(dest: Path, params: dict = TINY) -> tuple[Path, str]:
    """A git + DVC copy of this checkout (tracked and new files) in ``dest``, with ``params`` merged into
    params.yaml, after `dvc repro` (committed): (dest, the repro's output)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and (not f.startswith(("data/", "models/", "reports/", "metrics/"))
                                     or f.startswith(("data/lists/", "reports/templates/"))):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)   # night query lists: a build_gt dep
            shutil.copy2(ROOT / f, dest / f)
    (dest / "dvc.lock").unlink(missing_ok=True)
    text = yaml.safe_load((dest / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(merge(text, params), sort_keys=False))
    run_checked(["git", "init", "-q"], dest)
    run_checked(["git", "add", "-A"], dest)
    run_checked(["git", "commit", "-q", "-m", "tiny"], dest)
    out = dvc("repro", cwd=dest)
    run_checked(["git", "add", "-A"], dest)
    run_checked(["git", "commit", "-q", "-m", "repro"], dest)
    return dest, out


def query_run(name, seed, ranks, night=None, sets=("city",), **params):
    """A vpr.eval.experiments.Run of ``params`` and ``seed`` whose queries have first-correct ``ranks``."""
    from vpr.eval.experiments import Run
    rows = [dict(query=i, name=f"q{i}.jpg", night=int(bool(night[i])) if night is not None else 0, positives=1,
                 first_correct=r, top=[]) for i, r in enumerate(ranks)]
    return Run(name, name, {"seed": seed, "loss": "ms", "train.epochs": 6, **params}, {s: rows for s in sets})

