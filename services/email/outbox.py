"""The email outbox: emails caused by a state change are queued in that change's transaction and
delivered after the commit by a drainer (right after a CLI command, in the webhook listener's
background thread, or from cron with `codex email drain`).

Exactly one email per cause: the row's idempotency key is unique (queued twice is one row), drainers
claim rows with `FOR UPDATE SKIP LOCKED` (two drainers never hold one row), and the key goes to the
provider (Resend's Idempotency-Key; the .eml outbox names the file by the row id), so a crash between
the provider accepting and our commit resends the same message, which the provider does not deliver twice.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from services.core.errors import CodexError, Conflict, ExternalServiceError, NotFound, ValidationError
from services.core.masking import mask_email
from services.core.money import Money

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from services.bootstrap import Container
    from services.core.models import EmailOutbox

log = logging.getLogger("codex.email")

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_BASE = timedelta(seconds=30)  # 30 s, 1 min, 2 min, 4 min ... capped at MAX_BACKOFF
# A pending message due this long ago means nothing is draining the outbox (`codex doctor` says so).
OVERDUE_AFTER = timedelta(hours=1)
MAX_BACKOFF = timedelta(hours=1)
DEFAULT_BATCH = 50
MAX_ERROR_CHARS = 2000
STATUSES = ("pending", "sent", "dead")


# --- variables: JSON in the row, the template's Python values when rendered -------------------------


def encode_variables(data: dict[str, Any]) -> dict[str, Any]:
    """Template variables as JSON: Money and dates are tagged so the drainer renders them as before."""

    def encode(value: Any) -> Any:
        if isinstance(value, Money):
            return {"$money": {"cents": value.cents, "currency": value.currency}}
        if isinstance(value, datetime):
            return {"$datetime": value.isoformat()}
        if isinstance(value, date):
            return {"$date": value.isoformat()}
        if isinstance(value, dict):
            return {str(k): encode(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [encode(v) for v in value]
        if value is None or isinstance(value, str | int | float | bool):
            return value
        return str(value)

    return {str(k): encode(v) for k, v in (data or {}).items()}


def decode_variables(data: dict[str, Any]) -> dict[str, Any]:
    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                (tag, inner), *_ = value.items()
                if tag == "$money":
                    return Money(int(inner["cents"]), str(inner["currency"]))
                if tag == "$datetime":
                    return datetime.fromisoformat(inner)
                if tag == "$date":
                    return date.fromisoformat(inner)
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    return {k: decode(v) for k, v in (data or {}).items()}


# --- queueing (inside the caller's transaction) -------------------------------------------------------


@functools.cache
def _outbox_insert() -> Any:
    """The INSERT of `queue_email`, built once (Core: one per purchase on the webhook path)."""
    from sqlalchemy.dialects.postgresql import insert

    from services.core.models import EmailOutbox

    return (
        insert(EmailOutbox)
        .on_conflict_do_nothing(index_elements=[EmailOutbox.idempotency_key])
        .returning(EmailOutbox.id)
    )


def queue_email(
    session: Session,
    template: str,
    recipient: str,
    data: dict[str, Any],
    idempotency_key: str,
    reply_to: str | None = None,
) -> uuid.UUID:
    """Queue one email in the caller's transaction; returns its id (the existing row's for a key
    already queued, so a cause processed twice queues one email). ValidationError for an unknown
    template or a bad address, before anything is written."""
    from sqlalchemy import select

    from services.adapters.email_senders import validate_address
    from services.core.models import EmailOutbox
    from services.email.templates import template_spec

    template_spec(template)
    to = validate_address(recipient)
    reply = validate_address(reply_to, "reply-to") if reply_to else None
    if not idempotency_key:
        raise ValidationError("An outbox email needs an idempotency key.")
    values = {
        "template": template,
        "recipient": to,
        "variables": encode_variables(data),
        "reply_to": reply,
        "idempotency_key": idempotency_key,
    }
    inserted = session.connection().execute(_outbox_insert(), values).scalar()
    if inserted is not None:
        return inserted
    return session.execute(
        select(EmailOutbox.id).where(EmailOutbox.idempotency_key == idempotency_key)
    ).scalar_one()


# --- delivering ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt: `sent`, `retry` (failed, pending again later), `dead` (gave up) or
    `busy` (another drainer holds it, or it is not due/pending; nothing was done here)."""

    id: str
    template: str
    recipient: str  # masked
    status: str
    attempts: int
    error: str | None = None
    provider_id: str | None = None


@dataclass
class DrainReport:
    deliveries: list[Delivery] = field(default_factory=list)
    dead_total: int = 0  # messages parked dead in the whole outbox after this run

    def count(self, status: str) -> int:
        return sum(1 for d in self.deliveries if d.status == status)

    @property
    def sent(self) -> int:
        return self.count("sent")

    @property
    def retried(self) -> int:
        return self.count("retry")

    @property
    def dead(self) -> int:
        return self.count("dead")


def backoff(attempts: int, base: timedelta = DEFAULT_RETRY_BASE) -> timedelta:
    """The wait after the `attempts`-th failure: base, 2x, 4x ... at most MAX_BACKOFF."""
    return min(base * (2 ** max(0, attempts - 1)), MAX_BACKOFF)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip() if isinstance(exc, CodexError) else f"unexpected {type(exc).__name__}"
    return (text or type(exc).__name__)[:MAX_ERROR_CHARS]


def _send_one(container: Container, row: EmailOutbox) -> str:
    """Render the row's template and hand it to the sender with the row's keys; the provider's id."""
    from services.adapters.email_senders import OutgoingEmail, from_header

    service = container.notifications
    rendered = service.render(row.template, decode_variables(row.variables))
    email = OutgoingEmail(
        sender=from_header(container.settings),
        to=row.recipient,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        reply_to=row.reply_to,
        template=row.template,
        idempotency_key=row.idempotency_key,
        message_id=str(row.id),
    )
    return service.sender.send(email)


def _attempt(
    container: Container, row: EmailOutbox, now: datetime, max_attempts: int, retry_base: timedelta
) -> Delivery:
    """Send one claimed row and update it (the caller commits)."""
    from services.core.models import OutboxStatus

    shown = mask_email(row.recipient)
    row.attempts += 1
    try:
        provider_id = _send_one(container, row)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row, none stops the drain
        error = _error_text(exc)
        # A bad template or address does not get better by waiting: park it for a person at once.
        permanent = isinstance(exc, CodexError) and not isinstance(exc, ExternalServiceError)
        row.last_error = error
        if permanent or row.attempts >= max_attempts:
            row.status = OutboxStatus.dead
            log.error(
                "%s email %s to %s is dead after %d attempts: %s",
                row.template,
                row.id,
                shown,
                row.attempts,
                error,
            )
            return Delivery(str(row.id), row.template, shown, "dead", row.attempts, error)
        row.next_attempt_at = now + backoff(row.attempts, retry_base)
        log.warning(
            "%s email %s to %s failed (attempt %d of %d, next at %s): %s",
            row.template,
            row.id,
            shown,
            row.attempts,
            max_attempts,
            row.next_attempt_at.isoformat(timespec="seconds"),
            error,
        )
        return Delivery(str(row.id), row.template, shown, "retry", row.attempts, error)
    row.status = OutboxStatus.sent
    row.sent_at = now
    row.provider_message_id = provider_id
    row.last_error = None
    log.info("%s email %s to %s sent: %s", row.template, row.id, shown, provider_id)
    return Delivery(str(row.id), row.template, shown, "sent", row.attempts, None, provider_id)


def drain_outbox(
    container: Container,
    *,
    ids: list[uuid.UUID] | None = None,
    limit: int | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    retry_base: timedelta = DEFAULT_RETRY_BASE,
    batch_size: int = DEFAULT_BATCH,
    stop: threading.Event | None = None,
) -> DrainReport:
    """Send every due pending message (or just `ids`, due or not), batch by batch.

    Each batch is claimed with `FOR UPDATE SKIP LOCKED`, sent, marked and committed: rows another
    drainer holds are skipped, and a crash before the commit leaves the batch pending, resent later
    with the same idempotency keys. `ids` a drainer holds come back as `busy`.
    """
    from sqlalchemy import func, select

    from services.core.models import EmailOutbox, OutboxStatus

    if max_attempts < 1:
        raise ValidationError("The maximum number of attempts must be at least 1.", field="max_attempts")
    if limit is not None and limit < 1:
        raise ValidationError("The limit must be at least 1.", field="limit")
    report = DrainReport()
    wanted = list(ids) if ids is not None else None
    done = 0
    while wanted is None or wanted:
        if stop is not None and stop.is_set():
            break
        size = batch_size if limit is None else min(batch_size, limit - done)
        if size <= 0:
            break
        with container.uow() as uow:
            session = uow.session
            query = (
                select(EmailOutbox)
                .where(EmailOutbox.status == OutboxStatus.pending)
                .order_by(EmailOutbox.next_attempt_at, EmailOutbox.id)
                .limit(size)
                .with_for_update(skip_locked=True)
            )
            if wanted is not None:
                query = query.where(EmailOutbox.id.in_(wanted))
            else:
                query = query.where(EmailOutbox.next_attempt_at <= func.now())
            rows = list(session.scalars(query))
            if not rows:
                break
            now = datetime.now(UTC)
            claimed = {row.id for row in rows}
            for row in rows:
                report.deliveries.append(_attempt(container, row, now, max_attempts, retry_base))
            uow.commit()
        done += len(claimed)
        if wanted is not None:
            wanted = [i for i in wanted if i not in claimed]
    for missing in wanted or []:
        report.deliveries.append(Delivery(str(missing), "", "", "busy", 0))
    with container.uow() as uow:
        report.dead_total = (
            uow.session.scalar(
                select(func.count()).select_from(EmailOutbox).where(EmailOutbox.status == OutboxStatus.dead)
            )
            or 0
        )
    return report


def deliver_now(
    container: Container, message_id: uuid.UUID | None, quick_retries: int = 1
) -> Delivery | None:
    """Right after a command committed a queued email: try it now, and `quick_retries` more times
    after a short pause (the notification service's retry_delay) if it fails. Never raises (the
    change it belongs to is committed; a failure stays queued for the next drain). None when
    nothing was queued."""
    import time

    if message_id is None:
        return None
    delivery: Delivery | None = None
    for attempt in range(quick_retries + 1):
        if attempt and container.notifications.retry_delay:
            time.sleep(container.notifications.retry_delay)
        try:
            report = drain_outbox(container, ids=[message_id])
        except Exception as exc:  # noqa: BLE001 - the email stays queued; the caller reports it
            log.error("could not deliver queued email %s now: %s", message_id, _error_text(exc))
            return Delivery(str(message_id), "", "", "retry", 0, _error_text(exc))
        delivery = report.deliveries[0] if report.deliveries else None
        if delivery is None or delivery.status != "retry":
            break
    return delivery


class OutboxDrainer:
    """A background thread that drains the outbox every `interval` seconds (sooner after `wake()`),
    for long-running processes such as the webhook listener: `start()`, then `stop()` at shutdown.
    Several drainers, in one process or on several machines, never send one message twice."""

    def __init__(
        self,
        container: Container,
        interval: float = 1.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_base: timedelta = DEFAULT_RETRY_BASE,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self.container = container
        self.interval = interval
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.batch_size = batch_size
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    def start(self) -> OutboxDrainer:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="outbox-drainer", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> bool:
        """Finish the batch in hand and stop; True when the thread ended within `timeout`."""
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        self._stop.set()
        self._wake.set()
        thread.join(timeout)
        return not thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                report = drain_outbox(
                    self.container,
                    max_attempts=self.max_attempts,
                    retry_base=self.retry_base,
                    batch_size=self.batch_size,
                    stop=self._stop,
                )
                self.sent += report.sent
            except Exception as exc:  # noqa: BLE001 - a database outage must not end the thread
                log.warning("outbox drainer: %s; trying again in %.0f s", _error_text(exc), self.interval)
            self._wake.wait(self.interval)
            self._wake.clear()


# --- operator views: `codex email queue` / `codex email retry` ---------------------------------------


@dataclass(frozen=True)
class QueuedEmail:
    id: str
    template: str
    recipient: str  # masked
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None  # pending only
    sent_at: datetime | None


def _status(value: str | None) -> Any:
    from services.core.models import OutboxStatus

    if value is None:
        return None
    try:
        return OutboxStatus(value.strip().lower())
    except ValueError:
        raise ValidationError(f"Unknown status {value!r}: use one of {', '.join(STATUSES)}.") from None


def list_outbox(container: Container, status: str | None = None, limit: int = 50) -> list[QueuedEmail]:
    """Queued emails, newest first, optionally of one status; recipients masked."""
    from sqlalchemy import select

    from services.core.models import EmailOutbox, OutboxStatus

    wanted = _status(status)
    if limit < 1:
        raise ValidationError("The limit must be at least 1.", field="limit")
    query = select(EmailOutbox).order_by(EmailOutbox.created_at.desc(), EmailOutbox.id).limit(limit)
    if wanted is not None:
        query = query.where(EmailOutbox.status == wanted)
    with container.uow() as uow:
        return [
            QueuedEmail(
                id=str(r.id),
                template=r.template,
                recipient=mask_email(r.recipient),
                status=r.status.value,
                attempts=r.attempts,
                last_error=r.last_error,
                created_at=r.created_at,
                next_attempt_at=r.next_attempt_at if r.status == OutboxStatus.pending else None,
                sent_at=r.sent_at,
            )
            for r in uow.session.scalars(query)
        ]


def retry_outbox(container: Container, message_id: str | None = None, all_dead: bool = False) -> DrainReport:
    """Put one message (dead or pending) or every dead one back in the queue with fresh attempts,
    then deliver them at once. NotFound for an unknown id, Conflict for one already sent."""
    from sqlalchemy import func, select, update

    from services.core.models import EmailOutbox, OutboxStatus

    if (message_id is None) == (not all_dead):
        raise ValidationError("Give a message ID or ask for all the dead ones, not both.", field="all_dead")
    with container.uow() as uow:
        session = uow.session
        if message_id is not None:
            try:
                wanted = uuid.UUID(message_id.strip())
            except ValueError:
                raise ValidationError(f"{message_id!r} is not a message id (a UUID).") from None
            row = session.execute(
                select(EmailOutbox.status).where(EmailOutbox.id == wanted).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"No queued email {wanted}.")
            if row.status == OutboxStatus.sent:
                raise Conflict(f"Email {wanted} was already sent; nothing to retry.")
            where: Any = EmailOutbox.id == wanted
        else:
            where = EmailOutbox.status == OutboxStatus.dead
        ids = list(
            session.scalars(
                update(EmailOutbox)
                .where(where)
                .values(
                    status=OutboxStatus.pending, attempts=0, next_attempt_at=func.now(), updated_at=func.now()
                )
                .returning(EmailOutbox.id)
            )
        )
        uow.commit()
    if not ids:
        return drain_outbox(container, ids=[])
    return drain_outbox(container, ids=ids)


@dataclass(frozen=True)
class OutboxHealth:
    """What `codex doctor` says about the outbox: parked messages, and pending ones long overdue."""

    dead: int
    overdue: int
    pending: int


def outbox_health(container: Container, overdue_after: timedelta = OVERDUE_AFTER) -> OutboxHealth:
    """Counts of dead messages, and of pending ones due for longer than `overdue_after` (nothing is
    draining), in one query."""
    from sqlalchemy import func, select

    from services.core.models import EmailOutbox, OutboxStatus

    pending = EmailOutbox.status == OutboxStatus.pending
    with container.uow() as uow:
        row = uow.session.execute(
            select(
                func.count().filter(EmailOutbox.status == OutboxStatus.dead),
                func.count().filter(pending, EmailOutbox.next_attempt_at < func.now() - overdue_after),
                func.count().filter(pending),
            )
        ).one()
    return OutboxHealth(dead=row[0], overdue=row[1], pending=row[2])
