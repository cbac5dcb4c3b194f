"""The one exception type that reaches a user as a message instead of a traceback."""


class UserError(Exception):
    """A mistake the user can fix: bad config, missing locale, port in use, corrupt file.

    The command line prints ``str(err)`` on one line and exits with ``exit_code``.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
