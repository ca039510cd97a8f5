"""Errors caused by the user's input, reported as one line without a traceback."""

import sys


class UserError(Exception):
    """A problem with the input (params, data, checkpoints) that the user can fix.

    The message is one line: what is wrong and how to fix it. The CLI prints it and exits with
    status 2; everything else is a bug and keeps its traceback.
    """


class ConfigError(UserError):
    """A params or run-config file is malformed, incomplete or out of range."""


class DataError(UserError):
    """A dataset is missing, corrupt or of an unexpected layout."""


class DiskFullError(Exception):
    """A write failed for lack of space or quota; nothing half-written is left behind.

    Not the user's input: the CLI prints the one-line message and exits with status 1.
    """


class CheckpointError(UserError):
    """A checkpoint is corrupt, truncated, or belongs to another model or run."""


def print_user_error(error: UserError) -> None:
    """One `error: ...` line on stderr per line of the message."""
    for line in str(error).splitlines():
        print(f"error: {line}", file=sys.stderr)
