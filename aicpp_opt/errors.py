"""User-facing errors, each printed by the CLI as one line with its exit code:
``InputError`` 2 (bad input: names the field, the value and the fix), ``InfeasibleError`` 3 (no
plan meets the constraints, or a given plan breaks one), ``OutOfTimeError`` 4 (the time limit
ran out before any plan was found). Anything else is an internal error: exit 1."""

from pathlib import PurePath

EXIT_CODES = {
    "ok": 0,
    "internal error (rerun with --debug for the traceback)": 1,
    "bad input": 2,
    "infeasible": 3,
    "time limit reached with no plan": 4,
}


def brief(value: object, limit: int = 80) -> str:
    """A value for a one-line message: a path as written (escaped if it holds control
    characters), anything else as its ``repr``; cut to ``limit`` characters."""
    text = str(value) if isinstance(value, PurePath) else repr(value)
    if not text.isprintable():
        text = repr(text)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} chars)"


def key_name(key: str) -> str:
    """A user's key as part of a field name: as written when short and printable, else
    ``brief``'s form."""
    return key if len(key) <= 100 and key.isprintable() else brief(key)


class InputError(Exception):
    """Bad input from a user: a file, a field, an option. Printed as one line, exit 2."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self):
        return type(self), (self.field, self.message)


class InfeasibleError(Exception):
    """No plan satisfies the constraints; the message says which constraint binds and the
    closest achievable numbers. Printed as one line, exit 3."""


class OutOfTimeError(Exception):
    """The command's time limit ran out before a plan was found; the message says where the
    time went. Printed as one line, exit 4."""


NOT_REACHED = "not solved: the time limit ran out"
"""A case of a multi-solve command (frontier, compare, --framework all) the limit cut off."""
