"""User-facing errors: one line that names the bad field and the fix, exit code 2."""


class InputError(Exception):
    """Bad input from a user: a file, a field, an option. Printed as one line, exit 2."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InfeasibleError(Exception):
    """No plan satisfies the constraints; the message says which constraint binds and the
    closest achievable numbers. Printed as one line, exit 3."""
