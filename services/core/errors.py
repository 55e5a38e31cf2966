"""One small error family; the CLI maps each class to an exit code in one place."""

from __future__ import annotations


class CodexError(Exception):
    """Base of every error the service layer raises on purpose. The message is for a person."""

    exit_code = 1


class ValidationError(CodexError):
    """The input breaks a business rule (too short, out of range, wrong format)."""

    exit_code = 2


class NotFound(CodexError):
    """The thing asked for does not exist (or is not visible in this organization)."""

    exit_code = 3


class Conflict(CodexError):
    """The operation clashes with the current state (duplicate, already done, in use)."""

    exit_code = 1


class PermissionDenied(CodexError):
    """The operator is not allowed to do this."""

    exit_code = 1


class ConfigurationError(CodexError):
    """A setting needed for this operation is missing or invalid."""

    exit_code = 1


class ExternalServiceError(CodexError):
    """Stripe, R2 or the email provider failed; the message never carries a secret."""

    exit_code = 1


class DatabaseUnavailable(CodexError):
    """The database cannot be reached (host named, password masked)."""

    exit_code = 1


class NeedsAttention(CodexError):
    """The command finished but found something a person must look at."""

    exit_code = 4
