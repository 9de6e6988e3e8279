"""Errors a user can act on. The CLI prints them as one line and exits non-zero, without a traceback."""


class StageError(Exception):
    """A stage cannot go on: say what failed, where, and what would fix it, in one line."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none: for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
