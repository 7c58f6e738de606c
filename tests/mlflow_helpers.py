"""Transitional alias of :mod:`helpers` for a test module still being written (to be removed)."""

from helpers import client, runs  # noqa: F401
