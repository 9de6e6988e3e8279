"""Errors a user can act on. The CLI prints them as one line and exits non-zero, without a traceback."""


class StageError(Exception):
    """A stage cannot go on: say what failed, where, and what would fix it, in one line."""
