"""fetch sources: real archives served over HTTP from 127.0.0.1 only (Range, failures, truncation)."""

import hashlib
import io
import os
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from vpr.config.data import check_dataset
from vpr.data import download, sources
from vpr.data.filenames import FETCH_MARKER, format_name
from vpr.data.layouts import build_eval_index
from vpr.errors import ConfigError, DataError

FAST = dict(retries=4, backoff_s=0.01, timeout_s=10, progress=False)


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _set_files(prefix="tokyo_xs/test"):
    """A miniature evaluation set: 6 database images on a line, 2 queries next to two of them."""
    files = {}
    for i in range(6):
        files[f"{prefix}/database/{format_name(381500.0 + 50 * i, 3946790.0, 54, 'S')}"] = _jpeg(i)
    for i in (1, 4):
        files[f"{prefix}/queries/{format_name(381503.0 + 50 * i, 3946792.0, 54, 'S')}"] = _jpeg(
            10 + i
        )
    return files


def _zip(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar_gz(files: dict, links: dict = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in dict(links).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _spec(url, data=None, **extra):
    return dict(source="url", url=url, sha256=_sha(data) if data is not None else None, **extra)


def _leftovers(root):
    """Everything under ``root`` (to prove a failed fetch left nothing behind)."""
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, ds, fs in os.walk(root) for f in fs + ds
    )


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_good_archive_is_extracted_and_indexed(tmp_path, server, kind):
    files = _set_files()
    data = _zip(files) if kind == "zip" else _tar_gz(files)
    server.files[f"/tokyo_xs.{kind}"] = data
    raw, downloads = tmp_path / "raw", tmp_path / "downloads"
    summary = sources.fetch(
        "tokyo_xs", _spec(server.url(f"tokyo_xs.{kind}"), data), raw, downloads, **FAST
    )
    assert "extracted 8 files" in summary
    root = raw / "tokyo_xs"  # the single top folder tokyo_xs/ is unwrapped
    for name, content in files.items():
        assert (root / name.split("/", 1)[1]).read_bytes() == content
    assert sources.read_marker(root)["sha256"] == _sha(data)
    assert _leftovers(downloads) == [] and [p.name for p in raw.iterdir()] == ["tokyo_xs"]
    gt, _ = build_eval_index(
        str(root / "test"), 25.0
    )  # indexed: ground truth from the extracted names
    assert gt.num_database == 6 and gt.num_queries == 2
    assert [list(gt.positives[q]) for q in range(2)] == [[1], [4]]


def test_fetched_dataset_is_not_downloaded_again(tmp_path, server):
    data = _zip(_set_files())
    server.files["/a.zip"] = data
    spec = _spec(server.url("a.zip"), data)
    sources.fetch("a", spec, tmp_path / "raw", tmp_path / "dl", **FAST)
    assert "already fetched" in sources.fetch("a", spec, tmp_path / "raw", tmp_path / "dl", **FAST)
    assert len(server.ranges) == 1


def test_wrong_checksum_is_refused_and_leaves_nothing(tmp_path, server):
    data = _zip(_set_files())
    server.files["/a.zip"] = data
    spec = dict(_spec(server.url("a.zip")), sha256="0" * 64)
    with pytest.raises(DataError, match="sha256 mismatch") as err:
        sources.fetch("a", spec, tmp_path / "raw", tmp_path / "dl", **FAST)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "raw").exists() or _leftovers(tmp_path / "raw") == []
    assert not any(
        f.is_file() for f in (tmp_path / "dl").rglob("*")
    )  # the bad download was deleted


def test_truncated_download_is_resumed_with_range(tmp_path, server):
    data = _tar_gz(_set_files())
    server.files["/a.tar.gz"] = data
    server.truncate_first_at = len(data) // 3
    sources.fetch(
        "a", _spec(server.url("a.tar.gz"), data), tmp_path / "raw", tmp_path / "dl", **FAST
    )
    assert server.ranges == [None, f"bytes={len(data) // 3}-"]  # the second request resumed
    assert len(list((tmp_path / "raw/a/test/database").iterdir())) == 6


def test_server_failing_twice_is_retried(tmp_path, server):
    data = _zip(_set_files())
    server.files["/a.zip"] = data
    server.fail_first = 2
    sources.fetch("a", _spec(server.url("a.zip"), data), tmp_path / "raw", tmp_path / "dl", **FAST)
    assert len(server.ranges) == 3 and (tmp_path / "raw/a/test/queries").is_dir()


def test_retries_give_up_with_one_line(tmp_path, server):
    server.files["/a.zip"] = _zip(_set_files())
    server.fail_first = 99
    with pytest.raises(DataError, match=r"download failed after 3 attempts \(HTTP 503\)") as err:
        download.download(
            server.url("a.zip"),
            str(tmp_path / "dl/a.zip"),
            retries=2,
            backoff_s=0.01,
            progress=False,
        )
    assert "\n" not in str(err.value) and "resumed by the next run" in str(err.value)
    assert len(server.ranges) == 3


def test_server_ignoring_range_restarts_from_scratch(tmp_path, server):
    data = _zip(_set_files())
    server.files["/a.zip"] = data
    server.truncate_first_at = 500
    server.honour_range = False
    sources.fetch("a", _spec(server.url("a.zip"), data), tmp_path / "raw", tmp_path / "dl", **FAST)
    assert len(server.ranges) == 2 and (tmp_path / "raw/a/test/database").is_dir()


def test_missing_file_fails_at_once(tmp_path, server):
    with pytest.raises(DataError, match="HTTP 404"):
        sources.fetch(
            "a", _spec(server.url("nothing.zip")), tmp_path / "raw", tmp_path / "dl", **FAST
        )
    assert len(server.ranges) == 1  # no retry on a 404


@pytest.mark.parametrize(
    "kind,member",
    [
        ("zip", "../evil.jpg"),
        ("zip", "/tmp/evil.jpg"),
        ("tar.gz", "x/../../evil.jpg"),
        ("tar.gz", "/tmp/evil.jpg"),
    ],
)
def test_archive_members_escaping_the_target_are_refused(tmp_path, server, kind, member):
    files = {**_set_files(), member: b"pwned"}
    data = _zip(files) if kind == "zip" else _tar_gz(files)
    server.files[f"/bad.{kind}"] = data
    with pytest.raises(DataError, match="refusing to extract") as err:
        sources.fetch(
            "bad", _spec(server.url(f"bad.{kind}"), data), tmp_path / "raw", tmp_path / "dl", **FAST
        )
    assert member in str(err.value)
    assert _leftovers(tmp_path / "raw") == []  # nothing half-extracted
    assert not (tmp_path / "evil.jpg").exists() and not os.path.exists("/tmp/evil.jpg")


def test_symlink_member_pointing_outside_is_refused(tmp_path, server):
    data = _tar_gz(_set_files(), links={"tokyo_xs/test/passwd": "../../../../etc/passwd"})
    server.files["/bad.tar.gz"] = data
    with pytest.raises(DataError, match="links to '../../../../etc/passwd'"):
        sources.fetch(
            "bad", _spec(server.url("bad.tar.gz"), data), tmp_path / "raw", tmp_path / "dl", **FAST
        )
    assert _leftovers(tmp_path / "raw") == []


def test_broken_archive_is_a_clear_error_and_keeps_the_old_data(tmp_path, server):
    good = _zip(_set_files())
    server.files["/a.zip"] = good
    sources.fetch("a", _spec(server.url("a.zip"), good), tmp_path / "raw", tmp_path / "dl", **FAST)
    before = _leftovers(tmp_path / "raw")
    server.files["/b.zip"] = good[: len(good) // 2]  # a cut archive, no checksum known
    with pytest.raises(DataError, match="not a zip or tar archive|broken") as err:
        sources.fetch("a", _spec(server.url("b.zip")), tmp_path / "raw", tmp_path / "dl", **FAST)
    assert "re-run fetch" in str(err.value) and "\n" not in str(err.value)
    assert _leftovers(tmp_path / "raw") == before  # previous extraction untouched


def test_path_source_links_subfolders_and_lists_files_without_copying(tmp_path):
    user = tmp_path / "my_sf_xs"
    for name, data in _set_files("test").items():
        (user / name).parent.mkdir(parents=True, exist_ok=True)
        (user / name).write_bytes(data)
    (user / "README.txt").write_text("not linked")
    summary = sources.fetch(
        "sf_xs", dict(source="path", path=str(user)), tmp_path / "raw", tmp_path / "dl"
    )
    target = tmp_path / "raw/sf_xs"
    assert "8 files, not copied" in summary
    assert (target / "test").is_symlink() and os.path.realpath(target / "test") == str(
        user / "test"
    )
    listed = (target / sources.FILE_LIST).read_text().splitlines()
    assert (
        listed[0] == "path\tsize\tmtime_ns" and len(listed) == 1 + 8
    )  # every file of the linked folders
    real_files = [
        p for p in target.rglob("*") if p.is_file() and not p.is_symlink() and "test" not in p.parts
    ]
    assert sorted(p.name for p in real_files) == sorted([sources.FILE_LIST, FETCH_MARKER])
    gt, _ = build_eval_index(str(target / "test"))
    assert gt.num_database == 6


def test_path_source_refuses_images_at_the_top_and_folders_inside_data_raw(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "x.jpg").write_bytes(_jpeg(0))
    with pytest.raises(DataError, match="images lie directly in this folder"):
        sources.fetch("x", dict(source="path", path=str(flat)), tmp_path / "raw", tmp_path / "dl")
    (tmp_path / "raw/inner/sub").mkdir(parents=True)
    with pytest.raises(DataError, match="overlaps"):
        sources.fetch(
            "x",
            dict(source="path", path=str(tmp_path / "raw/inner")),
            tmp_path / "raw",
            tmp_path / "dl",
        )
    assert (tmp_path / "raw/inner/sub").is_dir()  # never touched


@pytest.mark.parametrize(
    "spec,message",
    [
        (dict(source="ftp"), "datasets.d.source: 'ftp' is not one of: synthetic, url, path"),
        (dict(source="url"), "datasets.d.url: source 'url' needs an http(s) address"),
        (
            dict(source="url", url="file:///etc"),
            "datasets.d.url: source 'url' needs an http(s) address",
        ),
        (
            dict(source="url", url="http://127.0.0.1/a.zip", sha256="abc"),
            "datasets.d.sha256: expected 64 hex digits",
        ),
        (
            dict(source="url", url="http://127.0.0.1/a.zip", root="../up"),
            "datasets.d.root: must be a folder inside",
        ),
        (dict(source="path"), "datasets.d.path: source 'path' needs the folder"),
        (dict(source="path", path="/x", mirror="y"), "datasets.d.mirror: unknown key 'mirror'"),
    ],
)
def test_bad_dataset_specs_give_one_line(spec, message):
    with pytest.raises(ConfigError) as err:
        check_dataset("d", spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_drive_links_are_recognised_and_named():
    url = "https://drive.google.com/file/d/15QB3VNKj93027UAQWv7pzFQO1JDCdZj2/view?usp=share_link"
    assert (
        download.is_google_drive(url) and download.archive_name(url, "tokyo_xs") == "tokyo_xs.zip"
    )
    assert download.archive_name("http://127.0.0.1:8/x/sf_xs.tar.gz?x=1", "sf_xs") == "sf_xs.tar.gz"
    assert not download.is_google_drive("http://127.0.0.1/a.zip")


def test_drive_links_go_through_gdown_then_the_same_checks(tmp_path, monkeypatch):
    import gdown

    data = _zip(_set_files())
    calls = []

    def fake_gdown(url, output, **kwargs):  # no network: hand over the archive bytes
        calls.append((url, kwargs))
        with open(output, "wb") as fh:
            fh.write(data)
        return output

    monkeypatch.setattr(gdown, "download", fake_gdown)
    url = "https://drive.google.com/file/d/15QB3VNKj93027UAQWv7pzFQO1JDCdZj2/view?usp=share_link"
    sources.fetch("tokyo_xs", _spec(url, data), tmp_path / "raw", tmp_path / "dl", **FAST)
    assert calls[0][1]["fuzzy"] and calls[0][1]["resume"]
    assert len(list((tmp_path / "raw/tokyo_xs/test/database").iterdir())) == 6
    with pytest.raises(DataError, match="sha256 mismatch"):
        sources.fetch(
            "other", dict(_spec(url), sha256="1" * 64), tmp_path / "raw", tmp_path / "dl", **FAST
        )


def test_sha256_mismatch_prints_both_hashes_in_full(tmp_path):
    path = tmp_path / "a.zip"
    path.write_bytes(b"not what was expected")
    expected = "0123456789abcdef" + "0" * 48  # same first 16 digits as nothing real: full hashes
    with pytest.raises(DataError) as err:
        download.verify_sha256(str(path), expected.upper(), "http://x/a.zip")
    msg = str(err.value)
    assert f"expected {expected}, got {_sha(b'not what was expected')}" in msg and "..." not in msg
    assert not path.exists()


@pytest.mark.parametrize("failure", ["404", "sha256"])
def test_failed_fetch_leaves_no_empty_download_folders(tmp_path, server, failure):
    data = _zip(_set_files())
    server.files["/a.zip"] = data
    url = server.url("missing.zip" if failure == "404" else "a.zip")
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl/keep").mkdir()  # not this attempt's: left alone
    with pytest.raises(DataError):
        sources.fetch(
            "a", dict(_spec(url), sha256="0" * 64), tmp_path / "raw", tmp_path / "dl", **FAST
        )
    assert _leftovers(tmp_path / "dl") == ["keep"]


def test_empty_queries_of_a_path_dataset_name_the_users_folder_not_the_link(tmp_path):
    user = tmp_path / "my_sf_xs"
    for name, data in _set_files("test").items():
        if "/queries/" not in name:
            (user / name).parent.mkdir(parents=True, exist_ok=True)
            (user / name).write_bytes(data)
    (user / "test/queries").mkdir()
    (user / "test/queries/notes.txt").write_text("photos to come")
    sources.fetch("sf_xs", dict(source="path", path=str(user)), tmp_path / "raw", tmp_path / "dl")
    with pytest.raises(DataError) as err:
        build_eval_index(str(tmp_path / "raw/sf_xs/test"))
    msg = str(err.value)
    assert f"{user}/test/queries" in msg and "check that folder" in msg and "\n" not in msg
    assert (
        "run fetch" not in msg and "fetched and extracted" not in msg
    )  # fetching again would change nothing
