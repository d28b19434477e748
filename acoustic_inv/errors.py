"""Errors a user can act on.

Every error raised for bad input names the file (where there is one), the field, the value and what
was expected. The CLI prints :class:`UserError` as one line and exits with code 2, no traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a file, a field or a value that is not what was expected."""


class ConfigError(UserError, ValueError):
    """A configuration or scenario value is missing, misspelt or out of range."""


class DataError(UserError, ValueError):
    """A data file (dataset, recording, checkpoint) cannot be read or does not match."""
