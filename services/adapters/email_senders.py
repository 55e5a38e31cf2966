"""Email senders: `ResendSender` (the `resend` SDK) and `OutboxSender` (one `.eml` file per message under
CODEX_HOME/outbox, the embedded default). Only this module imports `resend`.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from services.core.errors import ConfigurationError, ExternalServiceError, ValidationError
from services.core.masking import mask_email, mask_secret
from services.core.patterns import EMAIL_PATTERN
from services.settings import Settings

log = logging.getLogger("codex.email")


# The users.email CHECK constraint's pattern: no spaces, commas or angle brackets.
_ADDRESS = re.compile(EMAIL_PATTERN)
DEFAULT_RESEND_API_URL = "https://api.resend.com"


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
    # The outbox row's id: the .eml file's name and Message-ID, so writing it again replaces it.
    message_id: str = ""


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
        from email import policy

        from services.adapters.private_files import private_dir, write_private

        message = build_mime_message(email)
        if email.message_id:
            name = f"{email.message_id}.eml"
        else:  # a test email (`codex email send-test`), not an outbox message
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            name = f"{stamp}-{email.template or 'email'}-{uuid.uuid4().hex[:8]}.eml"
        path = self.directory / name
        try:
            private_dir(self.directory)
            write_private(path, message.as_bytes(policy=policy.compat32.clone(linesep="\r\n")))
        except OSError as exc:
            raise ExternalServiceError(
                f"Could not write to the outbox folder {self.directory}: {exc.strerror or exc}."
            ) from None
        log.info("outbox: wrote %s for %s", path.name, mask_email(email.to))
        return str(path)

    def describe(self) -> str:
        return f"outbox folder {self.directory}"

    def check(self) -> str:
        from services.adapters.private_files import private_dir

        probe = self.directory / f".codex-check-{uuid.uuid4().hex[:8]}"
        try:
            private_dir(self.directory)
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
    message["Message-ID"] = (
        f"<{email.message_id}@{domain}>" if email.message_id else make_msgid(domain=domain)
    )
    message.attach(MIMEText(email.text, "plain", "utf-8"))
    message.attach(MIMEText(email.html, "html", "utf-8"))
    # A boundary of our own: the generator would otherwise make one and compile a regex per message
    # to prove it absent. The parts are base64, whose alphabet has no "=" run like this one.
    message.set_boundary(f"===============codex{uuid.uuid4().hex}==")
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
                if getattr(exc, "error_type", "") == "invalid_idempotent_request":
                    # This key was accepted before with another body (a template changed between a
                    # send and its retry): Resend delivered the first one and will not send another.
                    return f"resend:already-accepted:{email.idempotency_key}"
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


def build_sender(settings: Settings) -> EmailSender:
    if settings.resend_api_key:
        return ResendSender(settings.resend_api_key, settings.resend_api_url, from_header(settings))
    return OutboxSender(settings.codex_home / "outbox")
