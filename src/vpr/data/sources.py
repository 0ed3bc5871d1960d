"""Where ``data/raw/<name>`` comes from: ``synthetic`` | ``url`` | ``path`` (the ``datasets`` section).

This module holds the dataset-level logic: ``fetch`` picks the source, skips a url dataset already
fetched (``read_marker``), and links a ``path`` dataset (``link_folder``). Getting and checking the
bytes is vpr.data.download; unpacking them safely is vpr.data.archives.

* ``url``: an http(s) zip or tar(.gz/.bz2/.xz) archive, or a Google Drive share link (via gdown).
  Downloaded into ``data/downloads/<name>/<url hash>/`` (vpr.data.download), checked against ``sha256``
  when known, then extracted (vpr.data.archives). The archive is deleted once extracted (the extracted
  folder is what DVC tracks).
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
import shutil
from types import SimpleNamespace

from vpr.data.archives import RefusedArchive, extract_archive
from vpr.data.download import archive_name, download
from vpr.data.filenames import FETCH_MARKER, IMAGE_EXTENSIONS, shown_if_not_utf8
from vpr.errors import DataError
from vpr.io import atomic_dir

FILE_LIST = ".files.tsv"


# --------------------------------------------------------------------------------------------- fetch
def fetch(
    name: str,
    spec: dict,
    raw_root: str = "data/raw",
    downloads: str = "data/downloads",
    synthetic: dict | None = None,
    retries: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> str:
    """Produce ``<raw_root>/<name>`` from its source (``spec``: datasets.<name>, validated by vpr.config or
    checked here by vpr.config.data.check_dataset; ``synthetic``: the synthetic section); a one-line summary."""
    from vpr.config.data import check_dataset
    from vpr.config.settings import Validated

    s = SimpleNamespace(**(spec if isinstance(spec, Validated) else check_dataset(name, spec)))
    target = os.path.join(raw_root, name)
    if s.source == "synthetic":
        from vpr.data.synthetic.generate import SyntheticSpec, generate

        summary = generate(target, SyntheticSpec.of(synthetic))
        return f"generated {summary['images']} synthetic images"
    if s.source == "path" and s.convert:
        return "converted " + _convert(
            s.convert,
            s.path,
            target,
            dict(source="path", path=os.path.realpath(s.path)),
            progress=progress,
        )
    if s.source == "path":
        n = link_folder(s.path, target, raw_root=raw_root)
        return f"linked {s.path} ({n} files, not copied)"
    marker = dict(source="url", url=s.url, sha256=s.sha256, root=s.root)
    if s.convert:
        marker["convert"] = s.convert
    done = read_marker(target)
    if done and all(done.get(k) == v for k, v in marker.items()):
        return f"already fetched from {s.url} ({done.get('files')} files); delete {target} to fetch it again"
    # one folder per URL: a partial file is only ever resumed from the address it came from
    folder = os.path.join(downloads, name, hashlib.sha1(s.url.encode()).hexdigest()[:12])
    created = [d for d in (folder, os.path.dirname(folder), downloads) if not os.path.isdir(d)]
    try:
        archive = download(
            s.url,
            os.path.join(folder, archive_name(s.url, name)),
            sha256=s.sha256,
            retries=retries,
            backoff_s=backoff_s,
            timeout_s=timeout_s,
            progress=progress,
        )
        if s.convert:  # extracted next to the download, then converted into the target
            extracted = os.path.join(folder, "extracted")
            _extract(archive, extracted, s.root, marker, progress)
            try:
                summary = _convert(
                    s.convert, extracted, target, marker, downloaded=True, progress=progress
                )
            finally:
                shutil.rmtree(extracted, ignore_errors=True)
            n = None
        else:
            n = _extract(archive, target, s.root, marker, progress)
    except BaseException:
        _remove_empty(
            created
        )  # what this attempt created and left empty (a kept .part stays, with its folder)
        raise
    _remove_empty([folder, os.path.dirname(folder)])
    if s.convert:
        return f"downloaded {s.url} and converted {summary}"
    return f"downloaded and extracted {n} files from {s.url}"


def _convert(
    name: str,
    source: str,
    target: str,
    marker: dict,
    downloaded: bool = False,
    progress: bool = False,
) -> str:
    """A dataset in its own layout -> @-named folders (datasets.<name>.convert); a one-line summary. A download
    has every file checked and its files moved; a local copy (``path``) is read, never changed."""
    from vpr.data import cambridge

    converters = {
        "cambridge_sv": cambridge
    }  # the schema lists the same names (vpr.config.sections.CONVERTERS)
    converter = converters[name]
    if not os.path.isdir(source):
        raise DataError(f"{source}: folder not found; fix the dataset's path in params.yaml")
    summary = converter.convert(
        source, target, verify_all=downloaded, move=downloaded, marker=marker, progress=progress
    )
    return converter.describe(summary)


def _extract(archive: str, target: str, root: str | None, marker: dict, progress: bool) -> int:
    """Extract, then delete the archive (the extracted folder is what the pipeline and DVC keep);
    an unusable archive is deleted too, so the next run downloads it afresh (a refused one: downloading it
    again would change nothing, so the message does not suggest it)."""
    try:
        n = extract_archive(archive, target, root=root, marker=marker, progress=progress)
    except RefusedArchive:
        os.remove(archive)
        raise
    except DataError as exc:
        os.remove(archive)
        raise DataError(
            f"{exc}; the download was deleted: re-run fetch to download it again"
        ) from None
    os.remove(archive)
    return n


def _remove_empty(folders) -> None:
    """Remove each folder that exists and is empty, in order (innermost first)."""
    for d in folders:
        if os.path.isdir(d) and not os.listdir(d):
            os.rmdir(d)


def read_marker(target: str) -> dict | None:
    try:
        with open(os.path.join(target, FETCH_MARKER)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------- path
def link_folder(src: str, target: str, raw_root: str = "data/raw") -> int:
    """Make ``target`` a folder of symlinks to the subfolders of ``src``, plus its file list.

    Returns the number of files under ``src``. Nothing is ever written under ``src``.
    """
    src_abs = os.path.realpath(os.path.expanduser(src))
    if not os.path.isdir(src_abs):
        raise DataError(
            f"{src}: folder not found; fix the dataset's path in params.yaml (an absolute path to the "
            f"folder you downloaded)"
        )
    raw_abs = os.path.realpath(raw_root)
    if (
        src_abs == raw_abs
        or src_abs.startswith(raw_abs + os.sep)
        or raw_abs.startswith(src_abs + os.sep)
    ):
        raise DataError(
            f"{src}: overlaps {raw_root}; point the dataset's path at a folder outside {raw_root}"
        )
    entries = sorted(os.listdir(src_abs))
    top_images = [e for e in entries if e.lower().endswith(IMAGE_EXTENSIONS)]
    if top_images:
        raise DataError(
            f"{src}: {len(top_images)} images lie directly in this folder (e.g. {top_images[0]}); "
            f"point path at the dataset root whose subfolders hold them (e.g. the folder containing "
            f"val/ and test/)"
        )
    folders = [
        e for e in entries if os.path.isdir(os.path.join(src_abs, e)) and not e.startswith(".")
    ]
    if not folders:
        raise DataError(
            f"{src}: no subfolders; point path at the dataset root (e.g. the folder containing val/ "
            f"and test/)"
        )
    listing = _file_list(
        src, src_abs, folders
    )  # before anything is made: a bad name leaves nothing behind
    with atomic_dir(target) as tmp:
        for e in folders:
            os.symlink(os.path.join(src_abs, e), os.path.join(tmp, e))
        with open(os.path.join(tmp, FILE_LIST), "w", encoding="utf-8") as fh:
            fh.write("path\tsize\tmtime_ns\n")
            fh.writelines(listing)
        with open(os.path.join(tmp, FETCH_MARKER), "w") as fh:
            json.dump(
                dict(source="path", path=src_abs, folders=folders, files=len(listing)), fh, indent=2
            )
    return len(listing)


def _file_list(src: str, src_abs: str, folders: list[str]) -> list[str]:
    """The FILE_LIST lines (path, size, mtime_ns) of every file under ``folders``; DataError naming (under
    ``src`` as the user wrote it) the first file whose name is not UTF-8 (vpr.data.filenames.shown_if_not_utf8
    says why such a name is refused)."""
    lines = []
    for e in folders:
        for dirpath, dirnames, files in os.walk(os.path.join(src_abs, e)):
            dirnames.sort()
            for f in sorted(files):
                p = os.path.join(dirpath, f)
                rel = os.path.relpath(p, src_abs)
                shown = shown_if_not_utf8(rel)
                if shown is not None:
                    raise DataError(
                        f"{os.path.join(src, shown)}: file name is not valid UTF-8 (image names are "
                        f"parsed and listed as text); rename it in UTF-8, e.g. convmv -f latin1 -t utf8 "
                        f"-r --notest {src}"
                    )
                st = os.stat(p)
                lines.append(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n")
    return lines
