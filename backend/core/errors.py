"""One error type for the whole product.

Every error raised on purpose by ``backend`` is a :class:`BrightRunError` (or a subclass) with a stable
``code``. Pages and the CLI turn the code and message into a sentence for the user; they never show a
traceback for these.
"""
from __future__ import annotations


class BrightRunError(Exception):
    """Base error: ``code`` is stable (used by tests, pages, CLI); ``message`` is for people;
    ``hint`` optionally says what to do about it."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.hint = hint

    def __str__(self) -> str:  # one clear line
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(BrightRunError):
    """A setting has a bad value; the message names the environment variable."""
    code = "config_error"


class NotFound(BrightRunError):
    code = "not_found"


class AccessDenied(BrightRunError):
    code = "access_denied"


class InvalidInput(BrightRunError):
    code = "invalid_input"


class InvalidTransition(BrightRunError):
    """A status change the state machine does not allow."""
    code = "invalid_transition"


class Conflict(BrightRunError):
    """The operation conflicts with the current state (e.g. deleting a dataset a job uses)."""
    code = "conflict"


class DatabaseError(BrightRunError):
    code = "database_error"


class StorageError(BrightRunError):
    code = "storage_error"


class RayError(BrightRunError):
    code = "ray_error"


class BudgetExceeded(BrightRunError):
    code = "budget_exceeded"


class AuthError(BrightRunError):
    code = "auth_error"
