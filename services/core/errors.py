"""One small error family; the CLI maps each class to an exit code in one place (codex_cli/app.py)."""

from __future__ import annotations


class CodexError(Exception):
    """Base of every error the service layer raises on purpose. The message is for a person.

    `field` names the service parameter the error is about (`limit`, `org`, `override_window`), so an
    entry point can point at its own way of setting it (the CLI adds `(--limit)`); services never name
    command-line flags themselves."""

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ValidationError(CodexError):
    """The input breaks a business rule (too short, out of range, wrong format)."""


class NotFound(CodexError):
    """The thing asked for does not exist (or is not visible in this organization)."""


class Conflict(CodexError):
    """The operation clashes with the current state (duplicate, already done, in use)."""


class PermissionDenied(CodexError):
    """The operator is not allowed to do this."""


class ConfigurationError(CodexError):
    """A setting needed for this operation is missing or invalid."""


class ExternalServiceError(CodexError):
    """Stripe, R2 or the email provider failed; the message never carries a secret."""


class DatabaseUnavailable(CodexError):
    """The database cannot be reached (host named, password masked)."""


class NeedsAttention(CodexError):
    """The command finished but found something a person must look at."""
