"""Errors the command line turns into one-line messages and exit code 2."""

from __future__ import annotations


class SparkleError(Exception):
    """A user-facing error: bad input, unknown names, unusable paths.

    The CLI prints ``error: <message>`` on one line and exits with code 2.
    """


class ConfigError(SparkleError):
    """An invalid configuration value; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
