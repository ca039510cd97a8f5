"""Errors caused by the user's input, reported as one line without a traceback."""


class UserError(Exception):
    """A problem with the input (params, data, checkpoints) that the user can fix.

    The message is one line: what is wrong and how to fix it. The CLI prints it and exits with
    status 2; everything else is a bug and keeps its traceback.
    """


class ConfigError(UserError):
    """A params or run-config file is malformed, incomplete or out of range."""


class DataError(UserError):
    """A dataset is missing, corrupt or of an unexpected layout."""


class CheckpointError(UserError):
    """A checkpoint is corrupt, truncated, or belongs to another model or run."""
