"""Shared by the stage scripts: find the library, read the command line (``--help``), validate what the stage
reads, report errors in one line."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the library of *this* checkout, installed or not
os.chdir(ROOT)

# what to do about an OSError, by errno; anything else gets DEFAULT_FIX
OS_FIXES = {
    errno.ENOSPC: "free some space on that disk and re-run",
    errno.EDQUOT: "free some space (disk quota)",
    errno.EACCES: "check permissions",
    errno.EPERM: "check permissions",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.ENOENT: "check that the path exists",
}
DEFAULT_FIX = "free some space / check permissions"


def load_config(stage: str):
    """params.yaml, validated as far as ``stage`` reads it (vpr.config.READS)."""
    from vpr.config import load_config as load

    return load(
        "params.yaml", stage
    )  # relative (the working folder is ROOT): messages name it as DVC does


class _Parser(argparse.ArgumentParser):
    def error(
        self, message
    ):  # argparse's usage line + message: one line instead, as every stage error
        _exit(f"error: {message} ({self.prog} --help shows the usage)", 2)


_COMMAND_LINE: dict = {}  # what run() parsed: the stage's name, its argument's (what, key) and value


def _parse_command_line(takes) -> None:
    """``--help``: the stage's docstring and argument, exit 0, before anything is read or written; an unknown
    option or an extra argument: one error line, exit 2. ``takes``: (what, key) of the stage's one argument,
    a name listed under params ``key`` (DVC passes each one), or None."""
    script = sys.modules["__main__"]
    stage = Path(script.__file__).stem
    what, key = takes or (None, None)
    prog = f"python stages/{stage}.py"
    parser = _Parser(
        prog=prog,
        usage=prog + (f" <{what}>" if what else ""),
        description=script.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    if what:  # optional for argparse: argument() names the choices when it is missing
        parser.add_argument(
            what,
            nargs="?",
            metavar=f"<{what}>",
            help=f"a {what} name listed under {key} in params.yaml",
        )
    args = parser.parse_args()
    _COMMAND_LINE.update(
        stage=stage, what=what, key=key, value=getattr(args, what) if what else None
    )


def argument(names) -> str:
    """The stage's one argument (run's ``takes``): a name listed in its params key; a ConfigError naming that
    key when it is missing or not listed there (DVC always passes a listed one)."""
    from vpr.errors import ConfigError

    stage, what, key, value = (_COMMAND_LINE[k] for k in ("stage", "what", "key", "value"))
    names = [str(n) for n in names]
    usage = f"usage: python stages/{stage}.py <{what}> (one of {key}: {', '.join(names) or 'none listed'})"
    if value is None:
        raise ConfigError(usage)
    if value not in names:
        raise ConfigError(f"{key}: no {what} '{value}' there; {usage}")
    return value


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
    where = " -> ".join(
        os.fsdecode(f) if not isinstance(f, int) else f"file descriptor {f}"
        for f in (exc.filename, exc.filename2)
        if f is not None
    )  # a rename names both
    what = exc.strerror or message(exc)
    if (
        exc.errno is None and " requested and " in what and " written" in what
    ):  # numpy's short write
        what, fix = f"a write stopped short ({what}): the disk is probably full", DEFAULT_FIX
    return f"{where}: {what} ({fix})" if where else f"{what} ({fix})"


def run(main, takes: tuple[str, str] | None = None) -> None:
    """Read the command line (``takes``: the (what, params key) of the stage's one argument, which ``main``
    gets from ``argument``; ``--help`` answers and exits here), then call ``main()``: a VPRError becomes
    ``error: <message>`` on stderr and exit status 2, an OSError (full disk, permissions) ``error: <file>:
    <problem> (<fix>)`` and status 2, Ctrl-C ``interrupted`` and status 130 (outputs are written to temporaries
    and renamed, vpr.io: nothing half-written stays). Anything else is a bug: its traceback."""
    _parse_command_line(takes)
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
