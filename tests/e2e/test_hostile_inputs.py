"""What a new user and a hostile input still hit (issue 22): archives whose links lead outside, file names that
are not UTF-8, 16-bit pictures, params.yaml with a key missing or given twice, and ``--help`` on a stage.
Each is refused with one line naming the file or key and the fix (or handled right), before any work."""

import io
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.helpers import ROOT, one_line, run_unchanged, stage_sandbox
from vpr.config import READS, load_config, load_params
from vpr.data import sources
from vpr.data.images import load_image
from vpr.errors import ConfigError, DataError

PARAMS_TEXT = (ROOT / "params.yaml").read_text()
STAGES = sorted(p.stem for p in (ROOT / "stages").glob("*.py") if not p.stem.startswith("_"))


# ------------------------------------------------------------------------------------------------- helpers
class Link(str):
    """An archive entry that is a symbolic link to this target."""


def _archive(kind: str, entries) -> bytes:
    """A zip or tar archive of ``entries`` [(name, bytes | Link)], in that order."""
    buf = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in entries:
                info = zipfile.ZipInfo(name)
                if isinstance(
                    data, Link
                ):  # how Info-ZIP stores a link: Unix mode S_IFLNK, the target as content
                    info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, str(data) if isinstance(data, Link) else data)
    else:
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                if isinstance(data, Link):
                    info.type, info.linkname = tarfile.SYMTYPE, str(data)
                    tf.addfile(info)
                else:
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _fetch_archive(monkeypatch, data: bytes, raw, downloads, name="ds"):
    """sources.fetch of a url dataset whose download is ``data`` (no network)."""

    def download(url, dest, **kwargs):
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        Path(dest).write_bytes(data)
        return dest

    monkeypatch.setattr(sources, "download", download)
    for folder in (raw, downloads):  # both kept: what is left in them is the test's to see
        os.makedirs(folder, exist_ok=True)
    spec = dict(source="url", url=f"http://127.0.0.1/{name}.archive", sha256=None)
    return sources.fetch(name, spec, str(raw), str(downloads), progress=False)


def _tree(root):
    """Every path under ``root`` (links as links, not followed) with what it is: proves nothing was written."""
    out = []
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            out.append(
                (
                    os.path.relpath(p, root),
                    os.readlink(p) if os.path.islink(p) else os.path.isdir(p),
                )
            )
    return sorted(out)


def _stage_box(tmp_path, params_text=PARAMS_TEXT):
    return stage_sandbox(tmp_path / "box", params_text)


# ----------------------------------------------------------------------------- 1. links chained in an archive
def _chain(depth: int):
    """``set/d -> ..``, then ``depth`` links ``a1 -> ..`` ... each inside the previous one, then a file under the
    last: every link looks inside the folder by its name, but on disk each one climbs one level higher."""
    entries, path = [("set/ok.jpg", b"fine"), ("set/d", Link(".."))], "set/d"
    for i in range(1, depth + 1):
        path += f"/a{i}"
        entries.append((path, Link("..")))
    return entries + [(f"{path}/evil.txt", b"pwned")], path


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("depth", [1, 5])
def test_a_chain_of_links_cannot_write_outside_the_dataset(tmp_path, monkeypatch, kind, depth):
    sentinel = tmp_path / "sentinel"
    work = sentinel.joinpath(
        *(f"w{i}" for i in range(depth + 2))
    )  # deep enough: even a write that escapes
    for folder in ("raw", "downloads"):  # lands under the sentinel folder
        (work / folder).mkdir(parents=True)
    before = _tree(sentinel)
    entries, last = _chain(depth)
    with pytest.raises(DataError) as err:
        _fetch_archive(monkeypatch, _archive(kind, entries), work / "raw", work / "downloads")
    line = one_line(str(err.value).splitlines(), "/")
    assert "member 'set/d/a1' goes through 'set/d', a link of the same archive" in line, line
    assert line.endswith("refusing to extract this archive")
    assert _tree(sentinel) == before  # no file, no link, no folder anywhere, archive deleted


def test_without_the_member_checks_the_check_on_disk_still_stops_the_chain(tmp_path, monkeypatch):
    """The second guard alone: each folder written into is resolved on disk first (links followed)."""
    from vpr.data import archives

    monkeypatch.setattr(archives, "check_members", lambda members, archive: None)
    sentinel = tmp_path / "sentinel"
    work = sentinel.joinpath(*(f"w{i}" for i in range(7)))
    for folder in ("raw", "downloads"):
        (work / folder).mkdir(parents=True)
    before = _tree(sentinel)
    with pytest.raises(
        DataError, match="member 'set/d/a1/a2' would be written outside the target folder"
    ):
        _fetch_archive(monkeypatch, _archive("zip", _chain(5)[0]), work / "raw", work / "downloads")
    assert _tree(sentinel) == before


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_a_link_whose_target_goes_through_another_link_is_refused(tmp_path, monkeypatch, kind):
    """``set/b -> .`` then ``set/a -> b/../..``: by its name ``set/a`` points at the dataset root, on disk at
    the folder above it (``set/b/..`` is the dataset root, one more ``..`` leaves it)."""
    entries = [("set/ok.jpg", b"fine"), ("set/b", Link(".")), ("set/a", Link("b/../.."))]
    with pytest.raises(
        DataError, match=r"member 'set/a' links to 'b/\.\./\.\.' through 'set/b'.*refusing"
    ):
        _fetch_archive(monkeypatch, _archive(kind, entries), tmp_path / "raw", tmp_path / "dl")
    assert _tree(tmp_path) == [("dl", True), ("raw", True)]


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_a_name_both_link_and_file_is_refused(tmp_path, monkeypatch, kind):
    entries = [
        ("set/ok.jpg", b"fine"),
        ("set/x", Link("ok.jpg")),
        ("set/x", b"written through the link"),
    ]
    with pytest.raises(DataError, match="member 'set/x' appears twice, once as a link; refusing"):
        _fetch_archive(monkeypatch, _archive(kind, entries), tmp_path / "raw", tmp_path / "dl")


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_links_that_stay_inside_are_extracted(tmp_path, monkeypatch, kind):
    entries = [
        ("set/db/ok.jpg", b"fine"),
        ("set/latest", Link("db")),
        ("set/same.jpg", Link("db/ok.jpg")),
        ("set/db/up", Link("..")),
    ]
    _fetch_archive(monkeypatch, _archive(kind, entries), tmp_path / "raw", tmp_path / "dl")
    root = tmp_path / "raw/ds"  # the single top folder set/ is unwrapped
    assert os.readlink(root / "latest") == "db" and (root / "same.jpg").read_bytes() == b"fine"
    assert (root / "db/up/latest/ok.jpg").read_bytes() == b"fine"


# ------------------------------------------------------------------------------ 2a. names that are not UTF-8
def _latin1_folder(root: Path) -> Path:
    """A dataset folder holding ``test/caf\\xe9.jpg`` (the name a Latin-1 system writes for 'café.jpg')."""
    (root / "test").mkdir(parents=True)
    (root / "test/ok.jpg").write_bytes(b"x")
    try:
        with open(os.fsencode(root / "test") + b"/caf\xe9.jpg", "wb") as fh:
            fh.write(b"x")
    except (
        OSError
    ) as exc:  # a file system that stores names as UTF-8 only (macOS): such a name cannot exist
        pytest.skip(f"this file system refuses non-UTF-8 names ({exc})")
    return root


def test_a_path_dataset_with_a_name_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    user = _latin1_folder(tmp_path / "user")
    with pytest.raises(DataError) as err:
        sources.fetch(
            "ds", dict(source="path", path=str(user)), str(tmp_path / "raw"), str(tmp_path / "dl")
        )
    line = one_line(str(err.value).splitlines(), f"{user}/test/caf\\xe9.jpg: ")
    assert "not valid UTF-8" in line and "rename" in line
    assert not (tmp_path / "raw").exists()  # the names are checked before anything is made


def test_fetch_stage_of_such_a_folder_is_one_error_line(tmp_path):
    user = _latin1_folder(tmp_path / "user")
    params = yaml.safe_load(PARAMS_TEXT)
    params["datasets"]["synth"] = dict(source="path", path=str(user))
    box = _stage_box(tmp_path, yaml.safe_dump(params))
    proc = run_unchanged(box, "stages/fetch.py", "synth")
    line = one_line(proc.stderr.splitlines(), f"error: {user}/test/caf\\xe9.jpg: ")
    assert proc.returncode == 2 and "rename" in line


def test_a_tar_member_whose_name_is_not_utf8_is_refused(tmp_path, monkeypatch):
    data = _archive("tar", [("ds/test/ok.jpg", b"x"), ("ds/test/caf\udce9.jpg", b"x")])
    with pytest.raises(DataError) as err:
        _fetch_archive(monkeypatch, data, tmp_path / "raw", tmp_path / "dl")
    line = one_line(str(err.value).splitlines(), str(tmp_path / "dl"))
    assert (
        "member 'ds/test/caf\\xe9.jpg': its name is not valid UTF-8" in line and "re-pack" in line
    )
    assert _tree(tmp_path) == [("dl", True), ("raw", True)]


def test_a_zip_member_flagged_utf8_but_not_utf8_is_refused(tmp_path, monkeypatch):
    data = _archive("zip", [("ds/test/ok.jpg", b"x"), ("ds/test/café.jpg", b"x")])
    data = data.replace(
        "é".encode(), b"\xe9\xe9"
    )  # the UTF-8 flag stays set: the name no longer decodes
    with pytest.raises(DataError) as err:
        _fetch_archive(monkeypatch, data, tmp_path / "raw", tmp_path / "dl")
    line = one_line(str(err.value).splitlines(), str(tmp_path / "dl"))
    assert (
        "member 'ds/test/caf\\xe9\\xe9.jpg': its name is not valid UTF-8" in line
        and "re-pack" in line
    )
    assert _tree(tmp_path) == [("dl", True), ("raw", True)]


# ----------------------------------------------------------------------------------- 2b. 16-bit pictures
def _png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG of ``array`` (H, W) grey or (H, W, 3) RGB, written by hand: Pillow writes only 16-bit grey."""
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    rows = array.reshape(h, w * channels).astype(">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in rows)  # filter 0 on every row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2}[channels], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _levels(shape) -> np.ndarray:
    """uint16 pixels around 120 of 255 on 8 bits (a mid-grey picture), with every low byte."""
    rng = np.random.default_rng(0)
    return rng.integers(60 * 256, 180 * 256, shape, dtype=np.uint16)


@pytest.mark.parametrize("kind", ["grey png", "rgb png", "grey tiff", "32-bit tiff"])
def test_16_bit_pictures_decode_to_their_8_bit_values(tmp_path, kind):
    from vpr.data.datasets import load_rgb

    pixels = _levels((30, 40, 3) if kind == "rgb png" else (30, 40))
    path = tmp_path / ("x.tif" if "tiff" in kind else "x.png")
    if kind == "grey tiff":
        Image.fromarray(pixels).save(path)  # Pillow reads it back as mode I;16
    elif kind == "32-bit tiff":  # mode I, as older Pillow gives for a 16-bit PNG
        Image.fromarray(pixels.astype(np.int32), "I").save(path)
    else:
        path.write_bytes(_png16(pixels))
    want = (pixels >> 8).astype(int)
    want = want if want.ndim == 3 else np.repeat(want[..., None], 3, axis=2)
    decoded = np.asarray(load_image(str(path))).astype(int)
    assert decoded.shape == want.shape and np.abs(decoded - want).max() <= 1
    assert np.abs(load_rgb(str(path)).permute(1, 2, 0).numpy().astype(int) - want).max() <= 1


def test_the_brightness_of_a_16_bit_picture_is_its_8_bit_one(tmp_path):
    from vpr.data.night import mean_brightness

    pixels = _levels((30, 40))
    (tmp_path / "x.png").write_bytes(_png16(pixels))
    assert abs(mean_brightness(str(tmp_path / "x.png")) - (pixels >> 8).mean()) < 1


# ------------------------------------------------------------------------- 2c. a key the stage reads is missing
def _required(stage: str):
    """The keys of params.yaml the stage lists (dvc.yaml), as paths; ``datasets.*``: the datasets section."""
    return [key.removesuffix(".*") for key in READS[stage] if key != "*"]


@pytest.mark.parametrize("stage,key", [(s, k) for s in READS for k in _required(s)])
def test_a_missing_key_a_stage_reads_is_one_line_naming_it(tmp_path, stage, key):
    raw = yaml.safe_load(PARAMS_TEXT)
    *parents, last = key.split(".")
    node = raw
    for p in parents:
        node = node[p]
    del node[last]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "params.yaml", stage)
    line = one_line(str(err.value).splitlines(), f"{tmp_path / 'params.yaml'}: missing key '{key}'")
    assert f"the {stage} stage reads it" in line and "add it" in line


@pytest.mark.parametrize(
    "text,missing",
    [
        (PARAMS_TEXT.replace("\nbackbone: efficientnet_lite0\n", "\n"), "missing key 'backbone'"),
        ("", "missing keys 'seed', 'backbone', "),
    ],
)
def test_train_without_backbone_or_with_an_empty_params_file_is_one_line(tmp_path, text, missing):
    assert text != PARAMS_TEXT
    box = _stage_box(tmp_path, text)
    proc = run_unchanged(box, "stages/train.py")
    line = one_line(proc.stderr.splitlines(), f"error: params.yaml: {missing}")
    assert proc.returncode == 2 and "the train stage reads" in line, line


# ------------------------------------------------------------------------------- 2d. a key given twice
def test_a_top_level_key_given_twice_is_one_line_with_both_lines(tmp_path):
    lines = PARAMS_TEXT.splitlines()
    first = lines.index("loss: multisimilarity") + 1
    (tmp_path / "params.yaml").write_text(PARAMS_TEXT + "loss: circle\n")
    with pytest.raises(ConfigError) as err:
        load_params(tmp_path / "params.yaml")
    assert str(err.value) == (
        f"{tmp_path / 'params.yaml'} line {len(lines) + 1}: duplicate key 'loss' (first at "
        f"line {first}); YAML keeps only the last one: remove one of them"
    )


def test_a_nested_key_given_twice_is_refused_but_a_merge_key_is_not(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "base: &b {lr: 1}\nadam:\n  <<: *b\n  lr: 2\ntrain:\n  epochs: 1\n  amp: false\n  epochs: 3\n"
    )
    with pytest.raises(ConfigError, match=r"line 8: duplicate key 'epochs' \(first at line 6\)"):
        load_params(path)
    path.write_text("base: &b {lr: 1}\nadam:\n  <<: *b\n  lr: 2\n")
    assert load_params(path)["adam"] == {"lr": 2}  # overriding a merged key is what '<<' is for


def test_train_with_loss_given_twice_stops_before_training(tmp_path):
    box = _stage_box(tmp_path, PARAMS_TEXT + "loss: circle\n")
    proc = run_unchanged(box, "stages/train.py")
    line = one_line(proc.stderr.splitlines(), "error: params.yaml line ")
    assert proc.returncode == 2 and "duplicate key 'loss'" in line


# -------------------------------------------------------------------------------------- 2e. --help, --foo
@pytest.fixture(scope="module")
def help_box(tmp_path_factory):
    return _stage_box(tmp_path_factory.mktemp("help"))


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_stage_answers_help_with_its_usage_and_touches_nothing(help_box, stage, flag):
    proc = run_unchanged(help_box, f"stages/{stage}.py", flag)
    assert proc.returncode == 0 and proc.stderr == ""
    doc = (ROOT / "stages" / f"{stage}.py").read_text().split('"""')[1].split("\n")[0]
    takes = {
        "fetch": "<dataset>",
        "extract": "<set>",
        "evaluate": "<set>",
        "visualize": "<set>",
    }.get(stage)
    assert proc.stdout.startswith(
        f"usage: python stages/{stage}.py{' ' + takes if takes else ''}\n"
    ), proc.stdout
    assert doc in proc.stdout
    if takes:
        assert ("data.fetch" if stage == "fetch" else "data.test") in proc.stdout


@pytest.mark.parametrize("stage", STAGES)
def test_an_unknown_option_is_one_error_line(help_box, stage):
    proc = run_unchanged(help_box, f"stages/{stage}.py", "--foo")
    line = one_line(proc.stderr.splitlines(), "error: unrecognized arguments: --foo")
    assert proc.returncode == 2 and f"python stages/{stage}.py --help" in line and proc.stdout == ""


def test_an_extra_argument_is_one_error_line(help_box):
    proc = run_unchanged(help_box, "stages/train.py", "synth")
    assert proc.returncode == 2 and one_line(
        proc.stderr.splitlines(), "error: unrecognized arguments: synth"
    )
