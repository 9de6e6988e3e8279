"""Errors a user can act on. The CLI prints them as one line and exits non-zero, without a traceback."""

from typing import Any


class ParamError(Exception):
    """A parameter a user set is not allowed. Printed as one line; the command exits with 2."""

    def __init__(self, key: str, value: Any, allowed: str, source: str = "params.yaml"):
        self.key, self.value, self.allowed, self.source = key, value, allowed, source
        super().__init__(key, value, allowed)

    def __str__(self) -> str:
        return f"{self.source}: {self.key}={self.value!r} is not allowed: {self.allowed}"


class StageError(Exception):
    """A stage cannot go on: say what failed, where, and what would fix it, in one line."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none: for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
