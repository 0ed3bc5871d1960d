"""Errors that carry a one-line message naming the offending file or key and the fix."""

import contextlib
import sys
import warnings


class VPRError(Exception):
    """Base class: stage scripts print ``error: <message>`` and exit with status 2."""


class ConfigError(VPRError):
    """A params.yaml key or value is wrong."""


class DataError(VPRError):
    """An input file or folder is missing, malformed or corrupt."""


class TrainingError(VPRError):
    """Training diverged (NaN/inf loss) or cannot continue."""


def require(condition: bool, key: str, message: str) -> None:
    """A one-line ConfigError naming ``key`` unless ``condition`` holds: for checks of the params schema and for
    what only the data or the model can tell (e.g. K > the smallest place)."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


class DataWarning(UserWarning):
    """A data problem that does not stop the stage (skipped images, unexpected set sizes, no coordinates)."""


@contextlib.contextmanager
def data_warnings_as_lines():
    """DataWarnings as ``warning: <message>`` lines on stderr (every one, like errors); other warnings as usual."""
    with warnings.catch_warnings():
        default_show = warnings.showwarning

        def show(message, category, *args, **kwargs):
            if issubclass(category, DataWarning):
                print(f"warning: {message}", file=sys.stderr, flush=True)
            else:
                default_show(message, category, *args, **kwargs)

        warnings.showwarning = show
        warnings.simplefilter("always", DataWarning)
        yield
