"""Sending email: `NotificationService.send_email` renders a template and hands it to a sender.

Senders: `ResendSender` (the `resend` SDK) and `OutboxSender` (one `.eml` file per message under
CODEX_HOME/outbox, the embedded default). Delivery is tried twice at most and never raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from services.email_templates import (
    CATALOG,
    EmailRenderer,
    RenderedEmail,
    TemplateOverride,
    load_override,
    template_spec,
)
from services.errors import ConfigurationError, ExternalServiceError, ValidationError
from services.masking import mask_email, mask_secret
from services.patterns import EMAIL_PATTERN
from services.settings import Settings

log = logging.getLogger("codex.email")

# The users.email CHECK constraint's pattern: no spaces, commas or angle brackets.
_ADDRESS = re.compile(EMAIL_PATTERN)
DEFAULT_RESEND_API_URL = "https://api.resend.com"
MAX_ATTEMPTS = 2  # the first try and one retry


@dataclass(frozen=True)
class EmailResult:
    """What happened to one email: the provider's message id (outbox: the file path) or the error."""

    success: bool
    message_id: str | None
    error: str | None
    attempts: int


@dataclass(frozen=True)
class OutgoingEmail:
    sender: str  # `Codex <noreply@codex.local>`
    to: str
    subject: str
    html: str
    text: str
    reply_to: str | None = None
    template: str = ""
    # The same key on the retry, so a provider that got the first request does not send twice.
    idempotency_key: str = field(default_factory=lambda: str(uuid.uuid4()))


class EmailSender(Protocol):
    name: str

    def send(self, email: OutgoingEmail) -> str:
        """Deliver one email and return the provider's id; ExternalServiceError when it fails."""
        ...

    def describe(self) -> str: ...

    def check(self) -> str: ...


def validate_address(address: str | None, what: str = "recipient") -> str:
    """The address, stripped; ValidationError (address masked) when it is not a plain email address."""
    value = (address or "").strip()
    if not value:
        raise ValidationError(f"The {what} address is empty; nothing was sent.")
    if not _ADDRESS.match(value) or ".." in value:
        raise ValidationError(f"The {what} address {mask_email(value)} is not a valid email address.")
    return value


def from_header(settings: Settings) -> str:
    """`EMAIL_FROM_NAME <EMAIL_FROM_ADDRESS>`, the name quoted when it needs to be."""
    from email.headerregistry import Address

    try:
        return str(
            Address(display_name=settings.email_from_name or "", addr_spec=settings.email_from_address)
        )
    except (ValueError, IndexError):  # a malformed address; `check()` reports it
        return f"{settings.email_from_name} <{settings.email_from_address}>"


# --- outbox ---


class OutboxSender:
    """Writes each message as an RFC 5322 `.eml` file (multipart/alternative: text, then html)."""

    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, email: OutgoingEmail) -> str:
        message = build_mime_message(email)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{stamp}-{email.template or 'email'}-{uuid.uuid4().hex[:8]}.eml"
        path = self.directory / name
        tmp = self.directory / f".{name}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            from email import policy

            tmp.write_bytes(message.as_bytes(policy=policy.compat32.clone(linesep="\r\n")))
            os.replace(tmp, path)  # readers never see half a message
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise ExternalServiceError(
                f"Could not write to the outbox folder {self.directory}: {exc.strerror or exc}."
            ) from None
        log.info("outbox: wrote %s for %s", path.name, mask_email(email.to))
        return str(path)

    def describe(self) -> str:
        return f"outbox folder {self.directory}"

    def check(self) -> str:
        probe = self.directory / f".codex-check-{uuid.uuid4().hex[:8]}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigurationError(
                f"The outbox folder {self.directory} is not writable: {exc.strerror or exc}."
            ) from None
        return f"outbox folder {self.directory} is writable (RESEND_API_KEY unset)"


def build_mime_message(email: OutgoingEmail) -> Any:
    """The RFC 5322 message for `email`: From, To, Subject, Reply-To, Date, Message-ID, two parts.

    Built with the `email.mime` classes: the same message as `EmailMessage` with the default policy,
    at a third of the CPU (it matters in the webhook listener, which writes one receipt per event).
    """
    from email.header import Header
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    from email.utils import formataddr, formatdate, make_msgid, parseaddr

    def _address(value: str) -> str:
        name, addr = parseaddr(value)
        return formataddr((name, addr), charset="utf-8") if name else addr

    message = MIMEMultipart("alternative")
    message["From"] = _address(email.sender)
    message["To"] = _address(email.to)
    subject = email.subject
    message["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
    if email.reply_to:
        message["Reply-To"] = _address(email.reply_to)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    domain = email.sender.rsplit("@", 1)[-1].rstrip(">") or "codex.local"
    message["Message-ID"] = make_msgid(domain=domain)
    message.attach(MIMEText(email.text, "plain", "utf-8"))
    message.attach(MIMEText(email.html, "html", "utf-8"))
    return message


# --- Resend ---

# The SDK keeps its key and base URL in module globals; one send at a time sets and clears them.
_RESEND_LOCK = threading.Lock()


class ResendSender:
    """Sends through the official `resend` SDK; RESEND_API_URL points it elsewhere (tests)."""

    name = "resend"

    def __init__(self, api_key: str, api_url: str = "", sender: str = "") -> None:
        self._api_key = api_key
        self.api_url = (api_url or DEFAULT_RESEND_API_URL).rstrip("/")
        self.sender = sender

    def send(self, email: OutgoingEmail) -> str:
        import resend
        from resend.exceptions import NoContentError, ResendError

        params: dict[str, Any] = {
            "from": email.sender,
            "to": [email.to],
            "subject": email.subject,
            "html": email.html,
            "text": email.text,
        }
        if email.reply_to:
            params["reply_to"] = email.reply_to
        with _RESEND_LOCK:
            previous = (resend.api_key, resend.api_url)
            resend.api_key = self._api_key
            # Read from the environment only when the SDK is first imported; set it every time.
            resend.api_url = self.api_url
            try:
                response = resend.Emails.send(params, {"idempotency_key": email.idempotency_key})  # type: ignore[arg-type]
            except ResendError as exc:
                raise ExternalServiceError(self._error_text(exc)) from None
            except NoContentError:
                raise ExternalServiceError("Resend returned an empty response.") from None
            finally:
                resend.api_key, resend.api_url = previous
        message_id = response.get("id") if hasattr(response, "get") else None
        if not message_id:
            raise ExternalServiceError("Resend accepted the request but returned no email id.")
        return str(message_id)

    def _error_text(self, exc: Any) -> str:
        code = getattr(exc, "code", "")
        kind = getattr(exc, "error_type", "") or ""
        message = str(getattr(exc, "message", "") or exc).strip()
        if self._api_key:
            message = message.replace(self._api_key, "***")
        if kind == "HttpClientError":  # the SDK's wrapper around a connection error or timeout
            errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", message)
            reason = errno.group(1).strip() if errno else message.removeprefix("Request failed: ")
            if "timed out" in message.lower():
                reason = "the request timed out"
            return f"Could not reach Resend at {self.api_url}: {reason}"
        detail = f"{code} {kind}".strip()
        return f"Resend refused the email ({detail}): {message}" if detail else f"Resend failed: {message}"

    def describe(self) -> str:
        where = "" if self.api_url == DEFAULT_RESEND_API_URL else f" at {self.api_url}"
        return f"Resend{where} (from {self.sender})"

    def check(self) -> str:
        if not self._api_key:
            raise ConfigurationError("RESEND_API_KEY is not set.")
        return f"Resend API key {mask_secret(self._api_key)} is set; sending from {self.sender}"


# --- the service ---


class NotificationService:
    """Renders templates (database override first) and sends them with one retry."""

    def __init__(
        self,
        sender: EmailSender,
        settings: Settings,
        container: Any = None,
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
                found = _unmigrated_guard(lambda: load_override(uow.session, key))
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


def _unmigrated_guard(read: Any) -> Any:
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


def build_sender(settings: Settings) -> EmailSender:
    if settings.resend_api_key:
        return ResendSender(settings.resend_api_key, settings.resend_api_url, from_header(settings))
    return OutboxSender(settings.codex_home / "outbox")


def build_notification_service(settings: Settings, container: Any = None) -> NotificationService:
    """Resend when RESEND_API_KEY is set, otherwise the outbox folder under CODEX_HOME."""
    return NotificationService(build_sender(settings), settings, container)


# --- entry points for `codex email` ---


@dataclass(frozen=True)
class TemplateInfo:
    key: str
    description: str
    variables: list[str]
    overridden: bool
    override_updated_at: datetime | None


def list_email_templates(container: Any) -> list[TemplateInfo]:
    """Every template key with its variables and whether a database override replaces the file."""
    from sqlalchemy import select

    from services.models import EmailTemplate

    with container.uow() as uow:
        stored = _unmigrated_guard(
            lambda: uow.session.execute(select(EmailTemplate.key, EmailTemplate.updated_at))
        )
        rows = {key: updated_at for key, updated_at in stored}
    return [
        TemplateInfo(
            key=spec.key,
            description=spec.description,
            variables=spec.variable_names,
            overridden=spec.key in rows,
            override_updated_at=rows.get(spec.key),
        )
        for spec in CATALOG.values()
    ]


def _data_with_samples(key: str, raw: dict[str, str], app_url: str) -> dict[str, Any]:
    from services.email_templates import coerce_data, sample_data

    return {**sample_data(key, app_url), **coerce_data(key, raw)}


def preview_email(container: Any, key: str, raw_data: dict[str, str]) -> RenderedEmail:
    """Render `key` as it would be sent (override included); variables not given get sample values."""
    template_spec(key)
    service: NotificationService = container.notifications
    data = _data_with_samples(key, raw_data, container.settings.app_url)
    return service.render(key, data, strict=True)


@dataclass(frozen=True)
class SentTestEmail:
    template: str
    recipient: str  # masked
    via: str
    message_id: str
    attempts: int


def send_test_email(container: Any, key: str, recipient: str, raw_data: dict[str, str]) -> SentTestEmail:
    """Send `key` to `recipient`, sample values for variables not given; ExternalServiceError on failure."""
    template_spec(key)
    to = validate_address(recipient)
    service: NotificationService = container.notifications
    data = _data_with_samples(key, raw_data, container.settings.app_url)
    result = service.send_email(key, to, data)
    if not result.success:
        shown = mask_email(to)
        raise ExternalServiceError(
            f"The {key} email to {shown} was not sent after {result.attempts} attempts: {result.error}"
        )
    return SentTestEmail(key, mask_email(to), service.describe(), result.message_id or "", result.attempts)
