"""Errors that carry a one-line message naming the offending file or key and the fix."""


class VPRError(Exception):
    """Base class: stage scripts print ``error: <message>`` and exit with status 2."""


class ConfigError(VPRError):
    """A params.yaml key or value is wrong."""


class DataError(VPRError):
    """An input file or folder is missing, malformed or corrupt."""


class TrainingError(VPRError):
    """Training diverged (NaN/inf loss) or cannot continue."""


class DataWarning(UserWarning):
    """A data problem that does not stop the stage (skipped images, unexpected set sizes, no coordinates)."""
