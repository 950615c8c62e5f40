"""Errors the CLI turns into one clear line and a non-zero exit status."""

from __future__ import annotations

__all__ = ["DatabaseUnavailable", "MigrationError", "SyncdError"]


class SyncdError(Exception):
    """An error meant for the operator: its message is printed as is, without a traceback."""

    exit_code: int = 1


class DatabaseUnavailable(SyncdError):
    """The database could not be reached or refused the connection."""


class MigrationError(SyncdError):
    """A migration could not be applied, or an applied one was changed."""
