"""Entry points for `codex email`: list the templates, preview one, send a test."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.adapters.email_senders import (
    validate_address,
)
from services.core.errors import ExternalServiceError
from services.core.masking import mask_email
from services.email.notifications import NotificationService, unmigrated_guard
from services.email.templates import (
    CATALOG,
    RenderedEmail,
    template_spec,
)

if TYPE_CHECKING:
    from services.bootstrap import Container

log = logging.getLogger("codex.email")


# --- entry points for `codex email` ---


@dataclass(frozen=True)
class TemplateInfo:
    key: str
    description: str
    variables: list[str]
    overridden: bool
    override_updated_at: datetime | None


def list_email_templates(container: Container) -> list[TemplateInfo]:
    """Every template key with its variables and whether a database override replaces the file."""
    from sqlalchemy import select

    from services.core.models import EmailTemplate

    with container.uow() as uow:
        stored = unmigrated_guard(
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
    from services.email.templates import coerce_data, sample_data

    return {**sample_data(key, app_url), **coerce_data(key, raw)}


def preview_email(container: Container, key: str, raw_data: dict[str, str]) -> RenderedEmail:
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


def send_test_email(
    container: Container, key: str, recipient: str, raw_data: dict[str, str]
) -> SentTestEmail:
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
