"""`codex doctor`: is every part of this installation reachable and configured? One result per check.

Each check runs on its own: a failure (or an unexpected exception) in one never stops the others.
A part left on its embedded default is reported as `local`, a part that is simply not set up (no
Stripe key on a laptop) as `not configured`; neither is a failure unless `strict` is asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from services.core.errors import CodexError, ConfigurationError
from services.settings import DEFAULT_APP_URL, SECRET_FIELDS, Settings

if TYPE_CHECKING:
    from services.bootstrap import Container

log = logging.getLogger("codex.doctor")

OK = "ok"
LOCAL = "local"
NOT_CONFIGURED = "not configured"
FAILED = "failed"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # ok | local | not configured | failed
    detail: str


@dataclass(frozen=True)
class DoctorReport:
    checks: list[CheckResult]
    strict: bool
    embedded: dict[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> list[CheckResult]:
        bad = {FAILED, LOCAL, NOT_CONFIGURED} if self.strict else {FAILED}
        return [c for c in self.checks if c.status in bad]

    @property
    def ok(self) -> bool:
        return not self.failures


class _Outcome(Exception):
    """Raised inside a check to report a status other than ok (or failed)."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _scrub(text: str, settings: Settings) -> str:
    """Remove any secret value from a message we did not write ourselves."""
    from services.core.masking import mask_url

    for name in SECRET_FIELDS:
        value = getattr(settings, name, "")
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    if settings.database_url:
        text = text.replace(settings.database_url, mask_url(settings.database_url))
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _run(name: str, check: Callable[[], str], settings: Settings, local: bool = False) -> CheckResult:
    result = _run_check(name, check, settings, local)
    return CheckResult(result.name, result.status, _one_line(result.detail))


def _run_check(name: str, check: Callable[[], str], settings: Settings, local: bool) -> CheckResult:
    try:
        detail = check()
    except _Outcome as outcome:
        return CheckResult(name, outcome.status, outcome.detail)
    except CodexError as exc:
        return CheckResult(name, FAILED, _scrub(str(exc), settings))
    except Exception as exc:  # noqa: BLE001 - one broken part must not hide the others
        log.debug("doctor: check %s raised %s", name, type(exc).__name__)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        message = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
        return CheckResult(name, FAILED, _scrub(message, settings))
    return CheckResult(name, LOCAL if local else OK, detail)


# --------------------------------------------------------------------------------------- the checks


def _check_database(container: Container) -> str:
    from services.adapters.db import connection_error, embedded_data_dir, is_connection_error
    from services.adapters.migrations import get_status
    from services.core.masking import url_target

    settings = container.settings
    try:
        status = get_status(container.engine)
    except Exception as exc:
        if is_connection_error(exc):
            url = container.__dict__.get("database_url") or settings.database_url
            raise connection_error(url, exc) from None
        raise
    where = (
        f"embedded PostgreSQL in {embedded_data_dir(settings.codex_home)}"
        if settings.embedded_database
        else url_target(container.database_url)
    )
    if not status.up_to_date:
        count = len(status.pending)
        raise ConfigurationError(
            f"{where} is reachable but at revision {status.current or 'none'} with {count} migration(s) "
            "pending; run `codex db migrate`."
        )
    return f"{where} reachable, schema at revision {status.current} (up to date)"


def _check_bucket(container: Container, bucket: str) -> str:
    from services.adapters.storage import build_object_store

    settings = container.settings
    store = (
        container.object_store if bucket == settings.r2_media_bucket else build_object_store(settings, bucket)
    )
    return str(store.check())


def _check_stripe(container: Container) -> str:
    if not container.settings.stripe_secret_key:
        raise _Outcome(NOT_CONFIGURED, "STRIPE_SECRET_KEY is not set; payment commands will refuse to run")
    return str(container.stripe.check())


def _check_email(container: Container) -> str:
    return str(container.notifications.check())


def _check_email_queue(container: Container) -> str:
    from services.email.outbox import OVERDUE_AFTER, outbox_health

    health = outbox_health(container)
    if health.dead:
        raise ConfigurationError(
            f"{health.dead} email(s) dead in the outbox; see `codex email queue --status dead`, then "
            "`codex email retry --all-dead`."
        )
    if health.overdue:
        hours = OVERDUE_AFTER.total_seconds() / 3600
        raise ConfigurationError(
            f"{health.overdue} email(s) pending for over {hours:g} hour(s): nothing is draining the outbox "
            "(run `codex email drain` from cron, or keep `codex webhook listen` running)."
        )
    return f"no dead email; {health.pending} pending"


def _check_webhook_secret(settings: Settings) -> str:
    secret = settings.stripe_webhook_secret_payment
    if not secret:
        raise _Outcome(
            NOT_CONFIGURED,
            "STRIPE_WEBHOOK_SECRET_PAYMENT is not set; `codex webhook listen` refuses to start",
        )
    if not secret.startswith("whsec_"):
        raise ConfigurationError(
            "STRIPE_WEBHOOK_SECRET_PAYMENT does not look like a Stripe signing secret (whsec_...)."
        )
    return "STRIPE_WEBHOOK_SECRET_PAYMENT is set"


def _check_app_url(settings: Settings) -> str:
    url = settings.app_url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"APP_URL {url!r} is not an http(s) URL; links in emails would break.")
    if url.rstrip("/") == DEFAULT_APP_URL:
        raise _Outcome(LOCAL, f"APP_URL is the default {DEFAULT_APP_URL}; links in emails point at a laptop")
    return f"APP_URL is {url}"


def run_doctor(container: Container, strict: bool = False) -> DoctorReport:
    """Run every check; `strict` also counts local and unconfigured parts as failures."""
    settings: Settings = container.settings
    checks = [
        _run("database", lambda: _check_database(container), settings, local=settings.embedded_database),
        _run(
            "media bucket",
            lambda: _check_bucket(container, settings.r2_media_bucket),
            settings,
            local=settings.local_object_store,
        ),
        _run(
            "assets bucket",
            lambda: _check_bucket(container, settings.r2_assets_bucket),
            settings,
            local=settings.local_object_store,
        ),
        _run("stripe", lambda: _check_stripe(container), settings),
        _run("email", lambda: _check_email(container), settings, local=settings.outbox_email),
        _run("webhook secret", lambda: _check_webhook_secret(settings), settings),
        _run("app url", lambda: _check_app_url(settings), settings),
    ]
    if checks[0].status in (OK, LOCAL):  # the database line already says why it could not be read
        checks.append(_run("email queue", lambda: _check_email_queue(container), settings))
    return DoctorReport(checks=checks, strict=strict, embedded=settings.embedded_parts())
