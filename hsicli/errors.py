"""Typed errors. The CLI turns each into one `Error:` line plus a `Hint:` line on stderr.

Library code raises these instead of printing; anything else escaping a command is a bug and
is reported as an internal error (with a traceback only when HSI_DEBUG=1).
"""

from __future__ import annotations


class HsiError(Exception):
    """A problem with the user's data or request that they can fix. Exit code 1."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class InputError(HsiError):
    """An input file is missing, unreadable or not what was expected."""


class StoreError(HsiError):
    """A store, checkpoint or prediction store is missing, incomplete or inconsistent."""


class OutputExistsError(HsiError):
    """An output already exists and --overwrite was not given."""


class UsageError(HsiError):
    """Options that contradict each other or are out of range. Exit code 2."""

    exit_code = 2


class Interrupted(HsiError):
    """Stopped by Ctrl-C (SIGINT); the message says what was kept. Exit code 130 (128 + SIGINT)."""

    exit_code = 130
