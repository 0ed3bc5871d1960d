"""Getting an archive over the network and checking it: plain http(s) with retries, exponential backoff
and HTTP Range resume of the partial file, Google Drive share links via gdown, and the sha256 check.

Used by vpr.data.sources.fetch; extraction lives in vpr.data.archives.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from urllib.parse import urlparse

from tqdm import tqdm

from vpr.errors import DataError
from vpr.progress import quiet

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
CHUNK = 1 << 20


def archive_name(url: str, name: str) -> str:
    """File name to save a download under: the URL's, or ``<name>.archive`` (Drive links have none)."""
    if is_google_drive(url):
        return f"{name}.zip"
    base = os.path.basename(urlparse(url).path)
    return (
        base
        if re.fullmatch(r"[\w.+-]+", base or "") and base not in (".", "..")
        else f"{name}.archive"
    )


def is_google_drive(url: str) -> bool:
    return urlparse(url).hostname in (
        "drive.google.com",
        "docs.google.com",
        "drive.usercontent.google.com",
    )


def sha256_of(path: str, progress: bool = False) -> str:
    h = hashlib.sha256()
    with (
        open(path, "rb") as fh,
        tqdm(
            total=os.path.getsize(path),
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"sha256 {os.path.basename(path)}",
            **quiet(progress),
            leave=False,
        ) as bar,
    ):
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
        raise DataError(
            f"{url or path}: sha256 mismatch (expected {expected.lower()}, got {got}); "
            f"the download was deleted: re-run fetch, or fix the dataset's sha256 in params.yaml"
        )


def download(
    url: str,
    dest: str,
    sha256: str | None = None,
    retries: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> str:
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
        out = gdown.download(
            url, dest, quiet=not progress, fuzzy=True, resume=True, retries=retries
        )
    except (
        Exception
    ) as exc:  # gdown raises many types (FileURLRetrievalError, requests errors, ...)
        raise DataError(
            f"{url}: Google Drive download failed ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
            f"check the link is shared publicly and re-run fetch (a partial file resumes)"
        ) from None
    if not out or not os.path.isfile(dest):
        raise DataError(f"{url}: Google Drive returned no file; check the link is shared publicly")


def _download_http(
    url: str, dest: str, retries: int, backoff_s: float, timeout_s: float, progress: bool
) -> None:
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
            except (
                requests.RequestException,
                urllib3.exceptions.HTTPError,
                ConnectionError,
            ) as exc:
                last = f"{exc.__class__.__name__}"
    raise DataError(
        f"{url}: download failed after {retries + 1} attempts ({last}); {_size(part)} kept in {part} "
        f"and resumed by the next run of fetch"
    )


class _Retry(Exception):
    pass


def _http_attempt(session, url: str, part: str, timeout_s: float, progress: bool) -> bool:
    """One request; appends to ``part``. True when the file is complete."""
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    headers = {
        "Accept-Encoding": "identity"
    }  # the file's own bytes: Range offsets and sha256 refer to them
    if have:
        headers["Range"] = f"bytes={have}-"
    with session.get(url, stream=True, timeout=timeout_s, headers=headers) as r:
        if r.status_code == 416 and have:  # nothing left to send: complete iff the sizes agree
            total = _content_range_total(r.headers.get("Content-Range", ""))
            if total == have:
                return True
            os.remove(part)
            raise _Retry("the server refused to resume the partial file; starting over")
        if r.status_code in RETRY_STATUS:
            raise _Retry(f"HTTP {r.status_code}")
        if r.status_code >= 400:
            raise DataError(
                f"{url}: HTTP {r.status_code} {r.reason}; check the dataset's url in params.yaml"
            )
        if r.status_code == 206:
            start = _content_range_start(r.headers.get("Content-Range", ""))
            if start != have:
                os.remove(part)
                raise _Retry("the server resumed at the wrong offset; starting over")
            mode = "ab"
        else:  # 200: the server ignored Range; start from scratch
            have, mode = 0, "wb"
        length = r.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with (
            open(part, mode) as fh,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"download {os.path.basename(part)[:-5]}",
                **quiet(progress),
                leave=False,
            ) as bar,
        ):
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
