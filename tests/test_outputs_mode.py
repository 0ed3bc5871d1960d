"""Outputs written through a temporary sibling get the modes the umask asks for (not mkstemp's 0600 / 0700)."""

import io
import os
import stat
import zipfile

import numpy as np
import pytest

from vpr import io as vio
from vpr.data import archives, sources
from vpr.data.filenames import FETCH_MARKER, format_name

MODES = {0o022: (0o644, 0o755), 0o077: (0o600, 0o700), 0o002: (0o664, 0o775)}


@pytest.fixture(params=sorted(MODES), ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    yield MODES[request.param]
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_file_path_and_dir_follow_the_umask(tmp_path, umask):
    file_mode, dir_mode = umask
    with vio.atomic_file(tmp_path / "metrics/a.json") as fh:
        fh.write("{}")
    vio.write_json(tmp_path / "metrics/b.json", {})
    with vio.atomic_path(tmp_path / "models/best.pt") as tmp:
        np.save(open(tmp, "wb"), np.zeros(2))
    with vio.atomic_dir(tmp_path / "features/test") as tmp:
        np.save(os.path.join(tmp, "database.npy"), np.zeros(2))
    for f in ("metrics/a.json", "metrics/b.json", "models/best.pt", "features/test/database.npy"):
        assert _mode(tmp_path / f) == file_mode, f
    assert _mode(tmp_path / "features/test") == dir_mode
    assert sorted(os.listdir(tmp_path / "metrics")) == [
        "a.json",
        "b.json",
    ]  # no temporary left behind


def test_ground_truth_linked_and_extracted_folders_follow_the_umask(tmp_path, umask):
    from vpr.data import groundtruth as gt

    file_mode, dir_mode = umask
    user = tmp_path / "user/test/database"
    user.mkdir(parents=True)
    (user / format_name(1.0, 2.0)).write_bytes(b"x")
    sources.link_folder(
        str(tmp_path / "user"), str(tmp_path / "raw/linked"), raw_root=str(tmp_path / "raw")
    )
    assert _mode(tmp_path / "raw/linked") == dir_mode
    assert _mode(tmp_path / "raw/linked" / sources.FILE_LIST) == file_mode
    gt.save_image_list(["a.jpg"], tmp_path / "gt/train/target_paths.npy")
    assert _mode(tmp_path / "gt/train/target_paths.npy") == file_mode
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("database/a.jpg", b"x")
        zf.writestr("queries/b.jpg", b"y")
    (tmp_path / "a.zip").write_bytes(buf.getvalue())
    archives.extract_archive(
        str(tmp_path / "a.zip"), str(tmp_path / "raw/unzipped"), root=".", progress=False
    )
    assert _mode(tmp_path / "raw/unzipped") == dir_mode
    assert _mode(tmp_path / "raw/unzipped" / FETCH_MARKER) == file_mode


def test_umask_without_proc_is_read_by_setting_and_restoring_it(monkeypatch):
    import builtins

    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise OSError("no /proc here")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    old = os.umask(0o027)
    try:
        assert vio.current_umask() == 0o027
        assert os.umask(0o027) == 0o027  # left as it was
    finally:
        os.umask(old)
