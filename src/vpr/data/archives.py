"""Safe archive extraction: a zip or tar archive is checked member by member (absolute names, ``..``,
links leaving the target, device files refuse the whole archive), extracted into a temporary folder next
to the target and renamed into place, so the target is replaced only if everything succeeds.

Used by vpr.data.sources.fetch; downloading lives in vpr.data.download.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib

from tqdm import tqdm

from vpr.data.filenames import FETCH_MARKER
from vpr.errors import DataError
from vpr.io import make_temp_dir
from vpr.progress import quiet



class UnsafeArchive(DataError):
    """An archive member would land outside the target folder."""


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
    staging = make_temp_dir(parent, f".{os.path.basename(target)}.extract.")   # umask mode: may become target
    try:
        if zipfile.is_zipfile(archive):
            count = _extract_zip(archive, staging, progress)
        elif _is_tar(archive):
            count = _extract_tar(archive, staging, progress)
        else:
            raise DataError(f"{archive}: not a zip or tar archive (maybe an HTML error page or a truncated file); "
                            f"nothing was extracted")
        top = _pick_root(staging, root, archive)
        with open(os.path.join(top, FETCH_MARKER), "w") as fh:
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
                      desc=f"extract {os.path.basename(archive)}", **quiet(progress), leave=False) as bar:
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
                      desc=f"extract {os.path.basename(archive)}", **quiet(progress), leave=False) as bar:
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
        old = make_temp_dir(os.path.dirname(os.path.abspath(target)), f".{os.path.basename(target)}.old.")
        os.replace(target, os.path.join(old, "x"))
    os.replace(new, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)
