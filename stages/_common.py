"""Shared by the stage scripts: find the library, validate what the stage reads, report errors in one line."""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the library of *this* checkout, installed or not
os.chdir(ROOT)

# what to do about an OSError, by errno; anything else gets DEFAULT_FIX
OS_FIXES = {errno.ENOSPC: "free some space on that disk and re-run", errno.EDQUOT: "free some space (disk quota)",
            errno.EACCES: "check permissions", errno.EPERM: "check permissions",
            errno.EROFS: "the file system is read-only: write elsewhere", errno.ENOENT: "check that the path exists"}
DEFAULT_FIX = "free some space / check permissions"


def load_config(stage: str):
    """params.yaml, validated as far as ``stage`` reads it (vpr.config.READS)."""
    from vpr.config import load_config as load
    return load("params.yaml", stage)   # relative (the working folder is ROOT): messages name it as DVC does


def argument(stage: str, key: str, names, what: str) -> str:
    """The one argument of ``python stages/<stage>.py <what>``: a name listed in params ``key``; a
    ConfigError naming ``key`` when it is missing or not listed there (DVC always passes a listed one)."""
    from vpr.errors import ConfigError
    names = [str(n) for n in names]
    usage = f"usage: python stages/{stage}.py <{what}> (one of {key}: {', '.join(names) or 'none listed'})"
    if len(sys.argv) != 2:
        raise ConfigError(usage)
    if sys.argv[1] not in names:
        raise ConfigError(f"{key}: no {what} '{sys.argv[1]}' there; {usage}")
    return sys.argv[1]


def eval_set_names(cfg) -> list:
    """The names under ``data.test`` in params.yaml as written: only to check a stage's argument (the stages
    that take a set name do not depend on the rest of the data section, so it is not validated here)."""
    data = cfg.raw.get("data")
    test = data.get("test") if isinstance(data, dict) else None
    return list(test) if isinstance(test, dict) else []


def message(exc: BaseException) -> str:
    """The exception's own message, on one line.

    A torch DataLoader worker's exception is re-raised here as the same type, its message replaced by
    "Caught <Type> in DataLoader worker process N.\\nOriginal Traceback ...\\n<module>.<Type>: <message>".
    The original is what follows the traceback's last "<Type>: " line. Recovering it here, where every error
    is printed, covers every loader (extract, training, future ones) and every error type, with no wrapping
    in each Dataset; any other multi-line message keeps its first line."""
    text = str(exc).strip()
    if text.startswith("Caught ") and "\nOriginal Traceback" in text:
        kind = type(exc)
        names = {kind.__qualname__, f"{kind.__module__}.{kind.__qualname__}"}
        for line in reversed(text.splitlines()):
            head, sep, rest = line.partition(": ")
            if sep and head in names:
                return rest.strip()
    return text.splitlines()[0] if text else type(exc).__name__


def os_error_line(exc: OSError) -> str:
    """``<file>: <what went wrong> (<fix>)`` for an OSError (full disk, permissions, missing path)."""
    fix = OS_FIXES.get(exc.errno, DEFAULT_FIX)
    where = " -> ".join(os.fsdecode(f) if not isinstance(f, int) else f"file descriptor {f}"
                        for f in (exc.filename, exc.filename2) if f is not None)   # a rename names both
    what = exc.strerror or message(exc)
    if exc.errno is None and " requested and " in what and " written" in what:   # numpy's short write
        what, fix = f"a write stopped short ({what}): the disk is probably full", DEFAULT_FIX
    return f"{where}: {what} ({fix})" if where else f"{what} ({fix})"


def run(main) -> None:
    """Call ``main()``: a VPRError becomes ``error: <message>`` on stderr and exit status 2, an OSError (full
    disk, permissions) ``error: <file>: <problem> (<fix>)`` and status 2, Ctrl-C ``interrupted`` and status 130
    (outputs are written to temporaries and renamed, vpr.io: nothing half-written stays). Anything else is a
    bug: its traceback."""
    from vpr.errors import VPRError, data_warnings_as_lines
    try:
        with data_warnings_as_lines():
            main()
    except VPRError as exc:
        _exit(f"error: {message(exc)}", 2)
    except OSError as exc:
        _exit(f"error: {os_error_line(exc)}", 2)
    except KeyboardInterrupt:
        _exit("interrupted", 130)


def _exit(line: str, status: int) -> None:
    print(line, file=sys.stderr, flush=True)
    sys.exit(status)
