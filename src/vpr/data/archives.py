"""Safe archive extraction: a zip or tar archive is checked member by member (absolute names, ``..``,
links leaving the target, paths through the archive's own links, device files, names that are not UTF-8:
any one refuses the whole archive), extracted into a temporary folder next to the target and renamed into
place, so the target is replaced only if everything succeeds.

Links are checked as the file system will resolve them, not only by their names. An archive holding
``set/d -> ..`` and ``set/d/a1 -> ..`` has two links that each look inside the folder; on disk the second
is created *through* the first, one level up, and a file ``set/d/a1/evil.txt`` lands outside (a chain of
them climbs as high as it likes). So no member may lie under, or link through, a link of the same archive;
such an archive is refused rather than extracted without its links, because a dataset whose links were
dropped silently would be another dataset (a folder the layout expects missing, or a file in its place).
Before each write the folder written into is also resolved on disk (links followed) and must lie in the
extraction folder, so no write ever goes outside it, whatever the check above missed.

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
from typing import NamedTuple

from tqdm import tqdm

from vpr.data.filenames import FETCH_MARKER, shown_if_not_utf8
from vpr.errors import DataError
from vpr.io import make_temp_dir
from vpr.progress import quiet


class RefusedArchive(DataError):
    """The archive's content is refused as it is: downloading it again would give the same."""


class UnsafeArchive(RefusedArchive):
    """An archive member would land outside the target folder."""


class Member(NamedTuple):
    """One archive member, as the checks see it."""

    stored: str  # the name as the archive gives it (messages)
    name: str  # normalised relative name
    kind: str  # file | dir | symlink | hardlink
    link: str = ""  # a link's target, '/'-separated (a symlink's: relative to its folder)


def extract_archive(
    archive: str,
    target: str,
    root: str | None = None,
    marker: dict | None = None,
    progress: bool = True,
) -> int:
    """Extract a zip or tar archive so that ``target`` is replaced only if everything succeeds.

    Members are checked first (absolute names, ``..``, links leaving the target or passed through, device
    files, names that are not UTF-8): one bad member refuses the whole archive. ``root``: the archive folder
    that becomes ``target`` (null: a single top-level folder is unwrapped, as in ``sf_xs.zip -> sf_xs/``;
    ``"."``: keep all).
    Returns the number of files.
    """
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = make_temp_dir(
        parent, f".{os.path.basename(target)}.extract."
    )  # umask mode: may become target
    try:
        if zipfile.is_zipfile(archive):
            count = _extract_zip(archive, staging, progress)
        elif _is_tar(archive):
            count = _extract_tar(archive, staging, progress)
        else:
            raise DataError(
                f"{archive}: not a zip or tar archive (maybe an HTML error page or a truncated file); "
                f"nothing was extracted"
            )
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
    shown = shown_if_not_utf8(name)
    if shown is not None:
        raise RefusedArchive(
            f"{archive}: member '{shown}': its name is not valid UTF-8 (image names are parsed "
            f"and listed later); re-pack the archive with UTF-8 names, or rename the file"
        )
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise UnsafeArchive(
            f"{archive}: member '{name}' has an absolute path; refusing to extract this archive"
        )
    if ".." in clean.split("/"):
        raise UnsafeArchive(
            f"{archive}: member '{name}' points outside the target folder ('..'); "
            f"refusing to extract this archive"
        )
    return posixpath.normpath(clean)


def check_members(members: list[Member], archive: str) -> None:
    """Refuse the archive (UnsafeArchive) if extracting ``members`` could write or point outside the target.

    Every path is walked component by component as the file system will: a member may not lie under one of
    the archive's links, a link's target may pass through none of them (it may end on one, itself checked),
    and no name may be both a link and another member (a later member would be written through the link)."""
    links = {m.name: m for m in members if m.kind == "symlink"}
    for m in members:
        if m.name in links and links[m.name] is not m:
            raise UnsafeArchive(
                f"{archive}: member '{m.stored}' appears twice, once as a link; "
                f"refusing to extract this archive"
            )
        _walk(m.name.split("/"), links, f"{archive}: member '{m.stored}' goes")
        if m.kind == "symlink" or m.kind == "hardlink":
            if posixpath.isabs(m.link):
                raise UnsafeArchive(
                    f"{archive}: member '{m.stored}' links to '{m.link}', outside the target "
                    f"folder; refusing to extract this archive"
                )
            folder = posixpath.dirname(m.name).split("/") if m.kind == "symlink" else []
            _walk(
                folder + m.link.split("/"),
                links,
                f"{archive}: member '{m.stored}' links to '{m.link}'",
            )


def _walk(parts: list[str], links: dict, what: str) -> None:
    """Follow ``parts`` from the target root; UnsafeArchive if they leave it or pass through one of ``links``."""
    parts = [p for p in parts if p not in ("", ".")]
    stack: list[str] = []
    for i, part in enumerate(parts):
        if part == "..":
            if not stack:
                raise UnsafeArchive(
                    f"{what}, outside the target folder; refusing to extract this archive"
                )
            stack.pop()
            continue
        stack.append(part)
        if i < len(parts) - 1 and "/".join(stack) in links:
            raise UnsafeArchive(
                f"{what} through '{'/'.join(stack)}', a link of the same archive (on disk it "
                f"can lead outside the target folder); refusing to extract this archive"
            )


def _guard(dest: str, path: str, archive: str, stored: str) -> None:
    """Before writing ``path``: the folder it goes into, resolved on disk (links followed), lies in ``dest``
    (already resolved), and ``path`` is not a link (a write would follow it)."""
    folder = os.path.realpath(os.path.dirname(path))
    if (folder != dest and not folder.startswith(dest + os.sep)) or os.path.islink(path):
        raise UnsafeArchive(
            f"{archive}: member '{stored}' would be written outside the target folder (through "
            f"a link); refusing to extract this archive"
        )


def _extract_zip(archive: str, dest: str, progress: bool) -> int:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            members = [_zip_member(zf, info, archive) for info in infos]
            check_members(members, archive)
            real = os.path.realpath(dest)
            count = 0
            with tqdm(
                total=sum(i.file_size for i in infos),
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"extract {os.path.basename(archive)}",
                **quiet(progress),
                leave=False,
            ) as bar:
                for info, m in zip(infos, members):
                    path = os.path.join(dest, m.name)
                    _guard(real, path, archive, m.stored)
                    if m.kind == "dir":
                        os.makedirs(path, exist_ok=True)
                    else:  # written here, not by ZipFile.extract: the path checked is the path written
                        os.makedirs(os.path.dirname(path), exist_ok=True)
                        if m.kind == "symlink":
                            os.symlink(m.link, path)
                        else:
                            with zf.open(info) as src, open(path, "wb") as out:
                                shutil.copyfileobj(src, out)
                        count += 1
                    bar.update(info.file_size)
            return count
    except (
        UnicodeDecodeError
    ) as exc:  # a name flagged UTF-8 that is not: ZipFile cannot even list the members
        shown = (
            exc.object.decode("utf-8", "backslashreplace") if isinstance(exc.object, bytes) else "?"
        )
        raise RefusedArchive(
            f"{archive}: member '{shown}': its name is not valid UTF-8 (image names are parsed "
            f"and listed later); re-pack the archive with UTF-8 names, or rename the file"
        ) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise DataError(
            f"{archive}: broken zip archive ({exc.__class__.__name__}: {exc}); "
            f"nothing was extracted"
        ) from None


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: str) -> Member:
    name = _check_name(info.filename, archive)
    if stat.S_ISLNK(
        info.external_attr >> 16
    ):  # Info-ZIP's links: Unix mode S_IFLNK, the target as content
        target = zf.read(info).decode("utf-8", "replace").replace("\\", "/")
        return Member(info.filename, name, "symlink", target)
    return Member(info.filename, name, "dir" if info.is_dir() else "file")


def _extract_tar(archive: str, dest: str, progress: bool) -> int:
    try:
        with tarfile.open(archive) as tf:
            members = (
                tf.getmembers()
            )  # reads the whole index: a truncated archive fails here, before writing
            checked = [_tar_member(m, archive) for m in members]
            check_members(checked, archive)
            real = os.path.realpath(dest)
            count = 0
            extra = (
                {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            )  # stdlib's own guard, too
            with tqdm(
                total=sum(m.size for m in members),
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"extract {os.path.basename(archive)}",
                **quiet(progress),
                leave=False,
            ) as bar:
                for m, c in zip(members, checked):
                    _guard(
                        real, os.path.join(dest, m.name), archive, c.stored
                    )  # tarfile writes m.name as is
                    tf.extract(m, dest, **extra)
                    count += m.isfile()
                    bar.update(m.size)
            return count
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(
            f"{archive}: broken tar archive ({exc.__class__.__name__}: {exc}); "
            f"nothing was extracted"
        ) from None


def _tar_member(m: tarfile.TarInfo, archive: str) -> Member:
    name = _check_name(m.name, archive)
    if m.issym() or m.islnk():  # a hard link's target is named from the archive root
        shown = shown_if_not_utf8(m.linkname)
        if shown is not None:
            raise RefusedArchive(
                f"{archive}: member '{m.name}' links to '{shown}', a name that is not valid "
                f"UTF-8; re-pack the archive with UTF-8 names"
            )
        return Member(
            m.name, name, "symlink" if m.issym() else "hardlink", m.linkname.replace("\\", "/")
        )
    if not (m.isfile() or m.isdir()):
        raise UnsafeArchive(
            f"{archive}: member '{m.name}' is a device or fifo; refusing to extract this archive"
        )
    return Member(m.name, name, "dir" if m.isdir() else "file")


def _pick_root(staging: str, root: str | None, archive: str) -> str:
    shutil.rmtree(
        os.path.join(staging, "__MACOSX"), ignore_errors=True
    )  # resource forks of macOS zips
    if root == ".":
        return staging
    if root:
        top = os.path.join(staging, root)
        if not os.path.isdir(top):
            raise DataError(
                f"{archive}: has no folder '{root}' (top level: {', '.join(sorted(os.listdir(staging)))}); "
                f"fix the dataset's root in params.yaml"
            )
        return top
    entries = os.listdir(staging)
    if (
        len(entries) == 1
        and os.path.isdir(os.path.join(staging, entries[0]))
        and not os.path.islink(os.path.join(staging, entries[0]))
    ):
        return os.path.join(staging, entries[0])  # sf_xs.zip holds sf_xs/: unwrap it
    return staging


def _replace_dir(new: str, target: str) -> None:
    """Put ``new`` at ``target``; the old content is moved aside first and deleted last."""
    old = None
    if os.path.lexists(target):
        old = make_temp_dir(
            os.path.dirname(os.path.abspath(target)), f".{os.path.basename(target)}.old."
        )
        os.replace(target, os.path.join(old, "x"))
    os.replace(new, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)
