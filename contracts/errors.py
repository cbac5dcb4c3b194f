"""The exception types that reach a user as one line instead of a traceback.

Exit codes: 2 when what the user gave is wrong (a config key, a value, an argument, an input file);
1 when the command could not do its work on what it found (a journal locked by another process,
damaged, foreign or of another version, a full disk): ``JournalProblem``, and libshm's own
``JournalError`` met anywhere, which the command line maps to the same exit code.
"""


class UserError(Exception):
    """A mistake the user can fix: bad config, missing locale, port in use, corrupt file.

    The command line prints ``str(err)`` on one line and exits with ``exit_code``.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class JournalProblem(UserError):
    """A journal the command needs is locked, damaged, foreign or of another version, or its
    disk is full: exit 1 (the command and its configuration were fine)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)
