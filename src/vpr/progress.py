"""Progress bars: one switch for every tqdm bar of the library."""

from __future__ import annotations


def quiet(progress: bool) -> dict:
    """tqdm kwargs: off when ``progress`` is False; otherwise tqdm decides (TQDM_DISABLE=1 still silences it)."""
    return {} if progress else {"disable": True}
