"""Where ``data/raw/<name>`` comes from: ``synthetic`` | ``url`` | ``path`` (the ``datasets`` section).

* ``url``: an http(s) zip or tar(.gz/.bz2/.xz) archive, or a Google Drive share link (via gdown).
  Downloaded into ``data/downloads/<name>/<url hash>/`` with retries, exponential backoff and HTTP Range resume of
  the partial file, checked against ``sha256`` when known, then extracted into a temporary folder next
  to the target and renamed into place. Every member is checked before anything is written: absolute
  names, ``..`` and links pointing outside the target refuse the whole archive. The archive is deleted
  once extracted (the extracted folder is what DVC tracks).
* ``path``: a folder the user already has. Never copied: ``data/raw/<name>/`` is a small real folder
  holding one symlink per top-level subfolder of ``path`` plus a file list (``.files.tsv``: path, size,
  mtime). DVC does not descend into symlinked folders when it hashes or caches an output, so the DVC
  cache receives the file list only (a few MB for 100k images), not a second copy of the images.
* ``synthetic``: the embedded city (vpr.data.synthetic).

Every fetched folder carries ``.fetch.json`` (what was fetched, from where); a url dataset whose
marker matches its spec is not downloaded again.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from urllib.parse import urlparse

from tqdm import tqdm

from vpr.errors import ConfigError, DataError
from vpr.io import atomic_dir

SOURCES = ("synthetic", "url", "path")
SPEC_KEYS = ("source", "url", "sha256", "root", "path")
MARKER = ".fetch.json"
FILE_LIST = ".files.tsv"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
CHUNK = 1 << 20


@dataclass(frozen=True)
class DatasetSpec:
    """One entry of ``datasets``; keys a source does not use are allowed (switching source keeps them)."""
    source: str
    url: str | None = None
    sha256: str | None = None     # lowercase hex of the archive; null = not verified
    root: str | None = None       # folder inside the archive that becomes data/raw/<name>; null = auto, "." = all
    path: str | None = None       # source: path


def check_spec(name: str, spec) -> DatasetSpec:
    """Validate ``datasets.<name>``; one-line ConfigError naming the key and the fix."""
    key = f"datasets.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{key}: expected a mapping like {{source: url, url: ..., sha256: ...}}, got {spec!r}")
    if spec.get("source") not in SOURCES:
        raise ConfigError(f"{key}.source: '{spec.get('source')}' is not one of: {', '.join(SOURCES)}")
    for k in spec:
        if k not in SPEC_KEYS:
            raise ConfigError(f"{key}.{k}: unknown key for source '{spec['source']}'; allowed: {', '.join(SPEC_KEYS)}")
        if k != "source" and spec[k] is not None and not isinstance(spec[k], str):
            raise ConfigError(f"{key}.{k}: expected a string or null, got {spec[k]!r}")
    s = DatasetSpec(**spec)
    if s.source == "url":
        if not s.url or urlparse(s.url).scheme not in ("http", "https"):
            raise ConfigError(f"{key}.url: source 'url' needs an http(s) address of a zip or tar archive, "
                              f"got {s.url!r}")
        if s.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", s.sha256):
            raise ConfigError(f"{key}.sha256: expected 64 hex digits or null, got {s.sha256!r}")
        if s.root is not None and (posixpath.isabs(s.root) or ".." in s.root.split("/")):
            raise ConfigError(f"{key}.root: must be a folder inside the archive (relative, no '..'), got {s.root!r}")
    if s.source == "path" and not s.path:
        raise ConfigError(f"{key}.path: source 'path' needs the folder you downloaded, e.g. path: /data/sf_xs")
    return s


# --------------------------------------------------------------------------------------------- fetch
def fetch(name: str, spec: dict, raw_root: str = "data/raw", downloads: str = "data/downloads",
          synthetic=None, retries: int = 5, backoff_s: float = 2.0, timeout_s: float = 60.0,
          progress: bool = True) -> str:
    """Produce ``<raw_root>/<name>`` from its source; returns a one-line summary."""
    s = check_spec(name, spec)
    target = os.path.join(raw_root, name)
    if s.source == "synthetic":
        from vpr.data.synthetic.generate import SyntheticSpec, generate
        summary = generate(target, synthetic or SyntheticSpec())
        return f"generated {summary['images']} synthetic images"
    if s.source == "path":
        n = link_folder(s.path, target, raw_root=raw_root)
        return f"linked {s.path} ({n} files, not copied)"
    marker = dict(source="url", url=s.url, sha256=s.sha256, root=s.root)
    done = read_marker(target)
    if done and all(done.get(k) == v for k, v in marker.items()):
        return f"already fetched from {s.url} ({done.get('files')} files); delete {target} to fetch it again"
    # one folder per URL: a partial file is only ever resumed from the address it came from
    folder = os.path.join(downloads, name, hashlib.sha1(s.url.encode()).hexdigest()[:12])
    archive = download(s.url, os.path.join(folder, archive_name(s.url, name)), sha256=s.sha256, retries=retries,
                       backoff_s=backoff_s, timeout_s=timeout_s, progress=progress)
    try:
        n = extract_archive(archive, target, root=s.root, marker=marker, progress=progress)
    except UnsafeArchive:
        os.remove(archive)
        raise
    except DataError as exc:
        os.remove(archive)   # unusable: the next run downloads it afresh
        raise DataError(f"{exc}; the download was deleted: re-run fetch to download it again") from None
    os.remove(archive)       # the extracted folder is what the pipeline (and DVC) keeps
    for empty in (folder, os.path.dirname(folder)):
        if not os.listdir(empty):
            os.rmdir(empty)
    return f"downloaded and extracted {n} files from {s.url}"


def _quiet(progress: bool) -> dict:
    """tqdm kwargs: off when ``progress`` is False; otherwise tqdm decides (TQDM_DISABLE=1 still silences it)."""
    return {} if progress else {"disable": True}


def read_marker(target: str) -> dict | None:
    try:
        with open(os.path.join(target, MARKER)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def archive_name(url: str, name: str) -> str:
    """File name to save a download under: the URL's, or ``<name>.archive`` (Drive links have none)."""
    if is_google_drive(url):
        return f"{name}.zip"
    base = os.path.basename(urlparse(url).path)
    return base if re.fullmatch(r"[\w.+-]+", base or "") and base not in (".", "..") else f"{name}.archive"


def is_google_drive(url: str) -> bool:
    return urlparse(url).hostname in ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")


# ------------------------------------------------------------------------------------------ download
def sha256_of(path: str, progress: bool = False) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh, tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=f"sha256 {os.path.basename(path)}", **_quiet(progress), leave=False) as bar:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def verify_sha256(path: str, expected: str | None, url: str = "", progress: bool = False) -> None:
    """DataError (and the file deleted, so the next run downloads it afresh) when the checksum differs."""
    if expected is None:
        return
    got = sha256_of(path, progress)
    if got != expected.lower():
        os.remove(path)
        raise DataError(f"{url or path}: sha256 mismatch (expected {expected.lower()[:16]}..., got {got[:16]}...); "
                        f"the download was deleted: re-run fetch, or fix the dataset's sha256 in params.yaml")


def download(url: str, dest: str, sha256: str | None = None, retries: int = 5, backoff_s: float = 2.0,
             timeout_s: float = 60.0, progress: bool = True) -> str:
    """Download ``url`` to ``dest`` (via ``dest.part``, resumed with HTTP Range after an interruption);
    retry connection errors, truncated bodies and 408/429/5xx with exponential backoff."""
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    if not os.path.isfile(dest):
        if is_google_drive(url):
            _download_drive(url, dest, retries, progress)
        else:
            _download_http(url, dest, retries, backoff_s, timeout_s, progress)
    verify_sha256(dest, sha256, url, progress)
    return dest


def _download_drive(url: str, dest: str, retries: int, progress: bool) -> None:
    import gdown  # only for Drive links; handles the confirmation page of large files, resumes .part files
    try:
        out = gdown.download(url, dest, quiet=not progress, fuzzy=True, resume=True, retries=retries)
    except Exception as exc:  # gdown raises many types (FileURLRetrievalError, requests errors, ...)
        raise DataError(f"{url}: Google Drive download failed ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
                        f"check the link is shared publicly and re-run fetch (a partial file resumes)") from None
    if not out or not os.path.isfile(dest):
        raise DataError(f"{url}: Google Drive returned no file; check the link is shared publicly")


def _download_http(url: str, dest: str, retries: int, backoff_s: float, timeout_s: float, progress: bool) -> None:
    import requests
    import urllib3

    part = dest + ".part"
    last = "no attempt"
    with requests.Session() as session:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(min(backoff_s * 2 ** (attempt - 1), 120.0))
            try:
                if _http_attempt(session, url, part, timeout_s, progress):
                    os.replace(part, dest)
                    return
                last = "the connection closed before the end of the file"
            except _Retry as exc:
                last = str(exc)
            except (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError) as exc:
                last = f"{exc.__class__.__name__}"
    raise DataError(f"{url}: download failed after {retries + 1} attempts ({last}); {_size(part)} kept in {part} "
                    f"and resumed by the next run of fetch")


class _Retry(Exception):
    pass


class UnsafeArchive(DataError):
    """An archive member would land outside the target folder."""


def _http_attempt(session, url: str, part: str, timeout_s: float, progress: bool) -> bool:
    """One request; appends to ``part``. True when the file is complete."""
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    headers = {"Accept-Encoding": "identity"}   # the file's own bytes: Range offsets and sha256 refer to them
    if have:
        headers["Range"] = f"bytes={have}-"
    with session.get(url, stream=True, timeout=timeout_s, headers=headers) as r:
        if r.status_code == 416 and have:             # nothing left to send: complete iff the sizes agree
            total = _content_range_total(r.headers.get("Content-Range", ""))
            if total == have:
                return True
            os.remove(part)
            raise _Retry("the server refused to resume the partial file; starting over")
        if r.status_code in RETRY_STATUS:
            raise _Retry(f"HTTP {r.status_code}")
        if r.status_code >= 400:
            raise DataError(f"{url}: HTTP {r.status_code} {r.reason}; check the dataset's url in params.yaml")
        if r.status_code == 206:
            start = _content_range_start(r.headers.get("Content-Range", ""))
            if start != have:
                os.remove(part)
                raise _Retry("the server resumed at the wrong offset; starting over")
            mode = "ab"
        else:                                          # 200: the server ignored Range; start from scratch
            have, mode = 0, "wb"
        length = r.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, mode) as fh, tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                                          desc=f"download {os.path.basename(part)[:-5]}", **_quiet(progress),
                                          leave=False) as bar:
            # read1 hands over whatever has arrived, so a connection cut mid-file keeps every byte received
            while block := r.raw.read1(CHUNK, decode_content=False):
                fh.write(block)
                bar.update(len(block))
    return total is None or os.path.getsize(part) == total


def _content_range_start(value: str) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value)
    return int(m.group(1)) if m else None


def _content_range_total(value: str) -> int | None:
    m = re.match(r"bytes (?:\*|\d+-\d+)/(\d+)", value)
    return int(m.group(1)) if m else None


def _size(path: str) -> str:
    n = os.path.getsize(path) if os.path.isfile(path) else 0
    return f"{n / 2**20:.1f} MiB"


# ------------------------------------------------------------------------------------------- extract
def extract_archive(archive: str, target: str, root: str | None = None, marker: dict | None = None,
                    progress: bool = True) -> int:
    """Extract a zip or tar archive so that ``target`` is replaced only if everything succeeds.

    Members are checked first (absolute names, ``..``, links leaving the target, device files):
    one bad member refuses the whole archive. ``root``: the archive folder that becomes ``target``
    (null: a single top-level folder is unwrapped, as in ``sf_xs.zip -> sf_xs/``; ``"."``: keep all).
    Returns the number of files.
    """
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.extract.", dir=parent)
    try:
        if zipfile.is_zipfile(archive):
            count = _extract_zip(archive, staging, progress)
        elif _is_tar(archive):
            count = _extract_tar(archive, staging, progress)
        else:
            raise DataError(f"{archive}: not a zip or tar archive (maybe an HTML error page or a truncated file); "
                            f"nothing was extracted")
        top = _pick_root(staging, root, archive)
        with open(os.path.join(top, MARKER), "w") as fh:
            json.dump({**(marker or {}), "files": count}, fh, indent=2)
        _replace_dir(top, target)
        return count
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_tar(path: str) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError, EOFError):
        return False


def _check_name(name: str, archive: str) -> str:
    """Normalised relative member name, or DataError if it would land outside the target."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise UnsafeArchive(f"{archive}: member '{name}' has an absolute path; refusing to extract this archive")
    if ".." in clean.split("/"):
        raise UnsafeArchive(f"{archive}: member '{name}' points outside the target folder ('..'); "
                        f"refusing to extract this archive")
    return posixpath.normpath(clean)


def _check_link(member: str, link: str, archive: str, relative_to_member: bool) -> None:
    base = posixpath.dirname(member) if relative_to_member else ""
    resolved = posixpath.normpath(posixpath.join(base, link.replace("\\", "/")))
    if posixpath.isabs(link) or resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchive(f"{archive}: member '{member}' links to '{link}', outside the target folder; "
                        f"refusing to extract this archive")


def _extract_zip(archive: str, dest: str, progress: bool) -> int:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            links = {}
            for info in infos:
                name = _check_name(info.filename, archive)
                if stat.S_ISLNK(info.external_attr >> 16):
                    target = zf.read(info).decode("utf-8", "replace")
                    _check_link(name, target, archive, relative_to_member=True)
                    links[info.filename] = (name, target)
            count = 0
            with tqdm(total=sum(i.file_size for i in infos), unit="B", unit_scale=True, unit_divisor=1024,
                      desc=f"extract {os.path.basename(archive)}", **_quiet(progress), leave=False) as bar:
                for info in infos:
                    if info.filename in links:
                        name, target = links[info.filename]
                        os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
                        os.symlink(target, os.path.join(dest, name))
                    else:
                        zf.extract(info, dest)
                    count += not info.is_dir()
                    bar.update(info.file_size)
            return count
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise DataError(f"{archive}: broken zip archive ({exc.__class__.__name__}: {exc}); "
                        f"nothing was extracted") from None


def _extract_tar(archive: str, dest: str, progress: bool) -> int:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()   # reads the whole index: a truncated archive fails here, before writing
            for m in members:
                name = _check_name(m.name, archive)
                if m.issym():
                    _check_link(name, m.linkname, archive, relative_to_member=True)
                elif m.islnk():
                    _check_link(name, m.linkname, archive, relative_to_member=False)
                elif not (m.isfile() or m.isdir()):
                    raise UnsafeArchive(f"{archive}: member '{m.name}' is a device or fifo; "
                                        f"refusing to extract this archive")
            count = 0
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # stdlib's own guard, too
            with tqdm(total=sum(m.size for m in members), unit="B", unit_scale=True, unit_divisor=1024,
                      desc=f"extract {os.path.basename(archive)}", **_quiet(progress), leave=False) as bar:
                for m in members:
                    tf.extract(m, dest, **extra)
                    count += m.isfile()
                    bar.update(m.size)
            return count
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{archive}: broken tar archive ({exc.__class__.__name__}: {exc}); "
                        f"nothing was extracted") from None


def _pick_root(staging: str, root: str | None, archive: str) -> str:
    shutil.rmtree(os.path.join(staging, "__MACOSX"), ignore_errors=True)   # resource forks of macOS zips
    if root == ".":
        return staging
    if root:
        top = os.path.join(staging, root)
        if not os.path.isdir(top):
            raise DataError(f"{archive}: has no folder '{root}' (top level: {', '.join(sorted(os.listdir(staging)))}); "
                            f"fix the dataset's root in params.yaml")
        return top
    entries = os.listdir(staging)
    if len(entries) == 1 and os.path.isdir(os.path.join(staging, entries[0])) \
            and not os.path.islink(os.path.join(staging, entries[0])):
        return os.path.join(staging, entries[0])   # sf_xs.zip holds sf_xs/: unwrap it
    return staging


def _replace_dir(new: str, target: str) -> None:
    """Put ``new`` at ``target``; the old content is moved aside first and deleted last."""
    old = None
    if os.path.lexists(target):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old.", dir=os.path.dirname(os.path.abspath(target)))
        os.replace(target, os.path.join(old, "x"))
    os.replace(new, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- path
def link_folder(src: str, target: str, raw_root: str = "data/raw") -> int:
    """Make ``target`` a folder of symlinks to the subfolders of ``src``, plus its file list.

    Returns the number of files under ``src``. Nothing is ever written under ``src``.
    """
    src_abs = os.path.realpath(os.path.expanduser(src))
    if not os.path.isdir(src_abs):
        raise DataError(f"{src}: folder not found; fix the dataset's path in params.yaml (an absolute path to the "
                        f"folder you downloaded)")
    raw_abs = os.path.realpath(raw_root)
    if src_abs == raw_abs or src_abs.startswith(raw_abs + os.sep) or raw_abs.startswith(src_abs + os.sep):
        raise DataError(f"{src}: overlaps {raw_root}; point the dataset's path at a folder outside {raw_root}")
    entries = sorted(os.listdir(src_abs))
    top_images = [e for e in entries if e.lower().endswith(IMAGE_EXTENSIONS)]
    if top_images:
        raise DataError(f"{src}: {len(top_images)} images lie directly in this folder (e.g. {top_images[0]}); "
                        f"point path at the dataset root whose subfolders hold them (e.g. the folder containing "
                        f"val/ and test/)")
    folders = [e for e in entries if os.path.isdir(os.path.join(src_abs, e)) and not e.startswith(".")]
    if not folders:
        raise DataError(f"{src}: no subfolders; point path at the dataset root (e.g. the folder containing val/ "
                        f"and test/)")
    count = 0
    with atomic_dir(target) as tmp:
        for e in folders:
            os.symlink(os.path.join(src_abs, e), os.path.join(tmp, e))
        with open(os.path.join(tmp, FILE_LIST), "w") as fh:
            fh.write("path\tsize\tmtime_ns\n")
            for e in folders:
                for dirpath, dirnames, files in os.walk(os.path.join(src_abs, e)):
                    dirnames.sort()
                    for f in sorted(files):
                        p = os.path.join(dirpath, f)
                        st = os.stat(p)
                        fh.write(f"{os.path.relpath(p, src_abs)}\t{st.st_size}\t{st.st_mtime_ns}\n")
                        count += 1
        with open(os.path.join(tmp, MARKER), "w") as fh:
            json.dump(dict(source="path", path=src_abs, folders=folders, files=count), fh, indent=2)
    return count
