"""The course switch end to end: `dvc exp run -S 'data=${data_profiles.course}'` in a throw-away copy of this
repository, with the three course datasets linked from local folders (a miniature of their real layout)."""

import hashlib
import json
import shutil
import subprocess

import pytest
import yaml

from tests.helpers import ROOT, TINY, course_tree, dvc, merge, ran_stages, run_checked

pytestmark = pytest.mark.slow
COURSE = ("gsv_xs", "sf_xs", "tokyo_xs")


@pytest.fixture(scope="module")
def course_run(tmp_path_factory, tiny_city):
    base = tmp_path_factory.mktemp("course")
    user = course_tree(tiny_city, base / "downloads")  # what a user downloaded and unzipped by hand
    dest = base / "repo"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith(
            ("data/raw", "data/gt", "models/", "reports/", "metrics/")
        ):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    (dest / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    # no training epoch (the untrained network is evaluated): this test is about data, not learning
    tiny = merge(json.loads(json.dumps(TINY)), {"train": {"epochs": 0}})
    (dest / "params.yaml").write_text(yaml.safe_dump(merge(params, tiny), sort_keys=False))
    run_checked(["git", "init", "-q"], dest)
    run_checked(["git", "add", "-A"], dest)
    run_checked(["git", "commit", "-q", "-m", "tiny"], dest)
    links = [
        a
        for name in COURSE
        for a in ("-S", f"datasets.{name}.source=path", "-S", f"datasets.{name}.path={user / name}")
    ]
    # up to the recall table (the pictures of visualize@ are not what this test is about)
    out = dvc("exp", "run", "-S", "data=${data_profiles.course}", *links, "recall_table", cwd=dest)
    return dest, user, out


def test_one_switch_runs_the_course_pipeline_and_writes_the_course_table(course_run):
    dest, _, out = course_run
    assert {
        "fetch@gsv_xs",
        "fetch@sf_xs",
        "fetch@tokyo_xs",
        "build_gt",
        "train",
        "extract@sf_xs_test",
        "extract@tokyo_xs_test",
        "evaluate@sf_xs_test",
        "evaluate@tokyo_xs_test",
        "recall_table",
    } <= ran_stages(out)
    assert "fetch@synth" not in ran_stages(out)
    rows = [
        line.split("|")[1].strip()
        for line in (dest / "metrics/recalls.md").read_text().splitlines()[2:]
    ]
    assert rows == ["sf_xs_test", "tokyo_xs_test", "tokyo_night"]
    night = json.loads((dest / "metrics/eval/tokyo_xs_test.json").read_text())["night"]
    assert (
        night["name"] == "tokyo_night"
        and night["rule"] == "brightness"
        and night["num_queries"] == 11
    )
    assert "night queries by rule: note 0, brightness 11 (using 'brightness')" in out
    assert (
        "warning: data/raw/sf_xs/test: 156 database / 24 query images, expected 27,191 / 1,000"
        in out
    )


def test_linked_datasets_are_not_copied_into_the_dvc_cache(course_run):
    dest, user, _ = course_run
    cached = {
        p.parent.name + p.name for p in (dest / ".dvc/cache/files/md5").rglob("*") if p.is_file()
    }
    images = list(user.rglob("*.jpg"))
    assert len(images) > 300
    assert not {hashlib.md5(p.read_bytes()).hexdigest() for p in images} & cached
    for name in COURSE:
        assert (dest / "data/raw" / name).is_dir() and not (dest / "data/raw" / name).is_symlink()
        assert all(
            p.is_symlink()
            for p in (dest / "data/raw" / name).iterdir()
            if not p.name.startswith(".")
        )


def test_a_loss_change_on_the_course_data_would_skip_fetch_and_ground_truth(course_run):
    dest, _, _ = course_run
    params = yaml.safe_load((dest / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(dict(params, loss="circle"), sort_keys=False))
    changed = json.loads(dvc("status", "--json", cwd=dest))
    assert "train" in changed and not set(changed) & {"build_gt", *(f"fetch@{n}" for n in COURSE)}
