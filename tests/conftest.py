"""The fixtures the tests share; plain helpers are in tests/helpers.py."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")

from tests.helpers import ROOT, TINY_SYNTHETIC, Server, copy_repo, pipeline_repo  # noqa: E402


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory):
    """Path of a generated miniature dataset root (train/, val/, test/)."""
    from vpr.data.synthetic.generate import SyntheticSpec, generate

    root = tmp_path_factory.mktemp("synth") / "synth"
    generate(root, SyntheticSpec.of(TINY_SYNTHETIC), workers=1)
    return root


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(scope="session")
def cambridge_source():
    """The shared Cambridge copy; skipped with a reason where it is absent, a failure under CI=true."""
    from vpr.data.cambridge import local_copy

    found = local_copy(str(ROOT))
    if found is None:
        why = (
            "the Cambridge street-view copy (../shared/data/cambridge_streetview, or $VPR_CAMBRIDGE_SV) is not on "
            "this machine"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI must run the real-photo tests")
        pytest.skip(why)
    return Path(found)


@pytest.fixture(scope="session")
def pristine_repo(tmp_path_factory):
    """The miniature pipeline, `dvc repro`'d once per session: (its path, the repro's output). Never changed:
    tests work on copies of it (``repo``), since a repro costs far more than a copy."""
    return pipeline_repo(tmp_path_factory.mktemp("pristine") / "repo")


@pytest.fixture(scope="module")
def repo(pristine_repo, tmp_path_factory):
    """A git + DVC copy of this checkout (tracked and new files), with the tiny params, after `dvc repro`:
    (its path, the repro's output). Module-scoped: each end-to-end module that asks for it gets a copy of its own."""
    src, out = pristine_repo
    return copy_repo(src, tmp_path_factory.mktemp("pipeline") / "repo"), out
