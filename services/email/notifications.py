"""Sending email: `NotificationService.send_email` renders a template and hands it to a sender.

Senders live in `services.adapters.email_senders`. Delivery is tried twice at most and never raises.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.adapters.email_senders import (
    EmailSender,
    OutgoingEmail,
    build_sender,
    from_header,
    validate_address,
)
from services.core.errors import ConfigurationError, ExternalServiceError, ValidationError
from services.core.masking import mask_email
from services.email.templates import (
    CATALOG,
    EmailRenderer,
    RenderedEmail,
    TemplateOverride,
    load_override,
    template_spec,
)
from services.settings import Settings

if TYPE_CHECKING:
    from services.bootstrap import Container

log = logging.getLogger("codex.email")


MAX_ATTEMPTS = 2  # the first try and one retry


@dataclass(frozen=True)
class EmailResult:
    """What happened to one email: the provider's message id (outbox: the file path) or the error."""

    success: bool
    message_id: str | None
    error: str | None
    attempts: int


# --- the service ---


class NotificationService:
    """Renders templates (database override first) and sends them with one retry."""

    def __init__(
        self,
        sender: EmailSender,
        settings: Settings,
        container: Container | None = None,
        retry_delay: float = 0.25,
    ) -> None:
        self.sender = sender
        self.settings = settings
        self.container = container
        self.retry_delay = retry_delay
        self.renderer = EmailRenderer(settings.app_url, settings.email_from_name or "Codex")
        self._override_ttl = 0.0
        self._override_cache: dict[str, tuple[float, TemplateOverride | None]] = {}

    # rendering

    def cache_overrides(self, seconds: float) -> None:
        """Remember each template's override for `seconds` (long-running processes such as the webhook
        listener, which would otherwise read the table once per email); a changed override applies
        within that time."""
        self._override_ttl = max(0.0, seconds)
        self._override_cache.clear()

    def override_for(self, key: str, strict: bool = False) -> TemplateOverride | None:
        """The database override of `key`; when the database cannot be read, None (strict: raise)."""
        if self.container is None:
            return None
        if self._override_ttl and not strict:
            cached = self._override_cache.get(key)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
        try:
            with self.container.uow() as uow:
                found = unmigrated_guard(lambda: load_override(uow.session, key))
                if self._override_ttl:
                    self._override_cache[key] = (time.monotonic() + self._override_ttl, found)
                return found
        except Exception as exc:  # noqa: BLE001 - an email with the file template beats no email
            if strict:
                raise
            log.warning(
                "could not read the override of %s (%s); using the file template", key, type(exc).__name__
            )
            return None

    def render(self, template: str, data: dict[str, Any], strict: bool = False) -> RenderedEmail:
        template_spec(template)
        return self.renderer.render(template, data, self.override_for(template, strict=strict))

    # sending

    def send_email(
        self,
        template: str,
        recipient: str,
        data: dict[str, Any],
        reply_to: str | None = None,
        idempotency_key: str | None = None,
    ) -> EmailResult:
        """Render `template` with `data` and send it to `recipient`; tries twice, never raises for delivery.

        Raises ValidationError before sending for an unknown template or a bad recipient/reply-to address.
        """
        template_spec(template)
        to = validate_address(recipient)
        reply = validate_address(reply_to, "reply-to") if reply_to else None
        rendered = self.render(template, data or {})
        email = OutgoingEmail(
            sender=from_header(self.settings),
            to=to,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            reply_to=reply,
            template=template,
            **({"idempotency_key": idempotency_key} if idempotency_key else {}),
        )
        return self.deliver(email)

    def deliver(self, email: OutgoingEmail) -> EmailResult:
        """Send a rendered email: one retry after a short pause; the result says what happened."""
        shown = mask_email(email.to)
        error = ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                message_id = self.sender.send(email)
            except ExternalServiceError as exc:
                error = str(exc)
                if attempt < MAX_ATTEMPTS:
                    log.warning("%s email to %s failed (%s); retrying once", email.template, shown, error)
                    if self.retry_delay:
                        time.sleep(self.retry_delay)
                    continue
                log.error(
                    "%s email to %s failed after %d attempts: %s", email.template, shown, attempt, error
                )
                return EmailResult(success=False, message_id=None, error=error, attempts=attempt)
            log.info("%s email to %s sent via %s: %s", email.template, shown, self.sender.name, message_id)
            return EmailResult(success=True, message_id=message_id, error=None, attempts=attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    # for `codex doctor` / `codex config`

    def describe(self) -> str:
        return self.sender.describe()

    def check(self) -> str:
        """A one-line health note; ConfigurationError when email cannot work. Sends nothing."""
        try:
            validate_address(self.settings.email_from_address, "EMAIL_FROM_ADDRESS")
        except ValidationError as exc:
            raise ConfigurationError(str(exc)) from None
        return self.sender.check()

    @property
    def template_keys(self) -> list[str]:
        return list(CATALOG)


def unmigrated_guard(read: Any) -> Any:
    """Run `read`; a missing email_templates table becomes a ConfigurationError that says what to do."""
    from sqlalchemy.exc import ProgrammingError

    try:
        return read()
    except ProgrammingError as exc:
        if type(getattr(exc, "orig", None)).__name__ != "UndefinedTable":
            raise
        raise ConfigurationError(
            "The database has no email_templates table yet; run `codex db migrate` first."
        ) from None


def build_notification_service(settings: Settings, container: Container | None = None) -> NotificationService:
    """Resend when RESEND_API_KEY is set, otherwise the outbox folder under CODEX_HOME."""
    return NotificationService(build_sender(settings), settings, container)
