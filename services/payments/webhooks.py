"""Stripe payment webhooks: signature check, the stored `stripe_events` log and exactly-once effects.

Every delivery is applied in one transaction that also inserts the event row, so an event is either
stored as done together with its effect, or not at all (and the caller answers 5xx so Stripe retries).
The same path serves replays of stored events and the backfill of events missed while we were down.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from services.core.errors import CodexError, NotFound, ValidationError

if TYPE_CHECKING:
    from services.bootstrap import Container

log = logging.getLogger("codex.webhooks")

SIGNATURE_TOLERANCE_SECONDS = 300
STRIPE_EVENT_RETENTION = timedelta(days=30)
MIN_PRUNE_AGE = timedelta(days=30)

COMPLETE_TYPES = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
FAIL_TYPES = frozenset({"checkout.session.expired", "checkout.session.async_payment_failed"})
# charge.refunded carries the cumulative amount but (since API 2022-11-15) no refund id; the refund
# events carry the id. Either may come first; both go through record_external_refund.
REFUND_TYPES = frozenset({"charge.refunded", "refund.created", "refund.updated", "charge.refund.updated"})
HANDLED_TYPES = COMPLETE_TYPES | FAIL_TYPES | REFUND_TYPES
MAX_ERROR_CHARS = 2000


class InvalidSignature(ValidationError):
    """The Stripe-Signature header is missing, malformed, does not match, or is too old."""


class MalformedEvent(ValidationError):
    """The body is not a Stripe event (JSON object with an id, a type and data.object)."""


class WebhookHandlingFailed(CodexError):
    """Applying the event failed; its effect was rolled back and the failed attempt recorded."""

    def __init__(self, event_id: str, message: str) -> None:
        super().__init__(message)
        self.event_id = event_id


@dataclass(frozen=True)
class WebhookOutcome:
    """What one delivery (or replay, or backfill) did.

    outcome: `processed` (handled type, applied now), `ignored` (a type we do not handle, stored),
    `duplicate` (already processed earlier; nothing done), `failed_permanently` (it can never apply,
    e.g. its purchaseId is not a UUID: stored for a person and answered 2xx so Stripe stops).
    `action` says what the effect was.
    """

    event_id: str
    type: str
    outcome: str
    action: str
    purchase_id: str | None = None
    email: str = "none"  # none | sent | failed (queued for retry) | queued (a drainer sends it)
    receipt: Any = field(default=None, repr=False, compare=False)  # the queued outbox message id


@dataclass(frozen=True)
class StoredEvent:
    id: str
    type: str
    status: str
    attempts: int
    error: str | None
    created: datetime | None
    received_at: datetime
    processed_at: datetime | None


@dataclass(frozen=True)
class BackfillItem:
    event_id: str
    type: str
    created: datetime | None
    stored_status: str | None  # None when we never received it
    result: str  # would-apply | applied | ignored | duplicate | failed
    detail: str = ""


@dataclass(frozen=True)
class BackfillReport:
    since: datetime
    dry_run: bool
    listed: int
    already_done: int
    items: list[BackfillItem] = field(default_factory=list)

    @property
    def failed(self) -> list[BackfillItem]:
        return [i for i in self.items if i.result == "failed"]


@dataclass(frozen=True)
class PruneReport:
    older_than: datetime
    dry_run: bool
    deleted: int
    kept_unfinished: int


# --- signature and parsing -------------------------------------------------------------------------


def verify_signature(
    payload: bytes,
    header: str | None,
    secret: str,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check Stripe's `t=...,v1=...` header: HMAC-SHA256 of "{t}.{payload}", any v1 may match."""
    if not secret:
        raise InvalidSignature("No webhook secret is configured; cannot verify signatures.")
    if not header:
        raise InvalidSignature("Missing Stripe-Signature header.")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature("Malformed Stripe-Signature header (bad timestamp).") from None
        elif key == "v1":
            candidates.append(value.strip())
    if timestamp is None or not candidates:
        raise InvalidSignature("Malformed Stripe-Signature header (needs t= and v1=).")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    # Compare against every candidate so timing does not depend on which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    if not matched:
        raise InvalidSignature("No signature matches this payload.")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature(
            f"Signature timestamp is outside the {tolerance // 60}-minute tolerance (stale or replayed)."
        )


def parse_event(payload: bytes) -> dict[str, Any]:
    """The event as a dict; MalformedEvent unless it has an id, a type and a data.object."""
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise MalformedEvent("The body is not valid JSON.") from None
    if not isinstance(event, dict):
        raise MalformedEvent("The body is not a JSON object.")
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 255:
        raise MalformedEvent("The event has no valid id.")
    if not isinstance(event_type, str) or not event_type.strip():
        raise MalformedEvent("The event has no type.")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise MalformedEvent("The event has no data.object.")
    return event


# --- applying events ---------------------------------------------------------------------------------


def _apply(session: Any, event: dict[str, Any]) -> Any:
    """Run the purchase service for one event inside the caller's transaction; None = type not handled.

    Returns the purchases.PurchaseOutcome. `complete_purchase` itself leaves an unpaid session pending.
    """
    event_type = event["type"]
    if event_type not in HANDLED_TYPES:
        return None
    from services.payments import purchases

    obj = event["data"]["object"]
    if event_type in COMPLETE_TYPES:
        return purchases.complete_purchase(session, obj)
    if event_type in FAIL_TYPES:
        return purchases.fail_purchase(session, obj)
    return purchases.record_external_refund(session, obj)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, CodexError):
        text = f"{type(exc).__name__}: {text}"
    return text.replace("\x00", "\ufffd")[:MAX_ERROR_CHARS]


def storable(value: Any) -> Any:
    """The event with every NUL replaced (U+FFFD): PostgreSQL's jsonb and text cannot hold one, and an
    event that cannot be stored could never be answered anything but 5xx."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def _is_db_unavailable(exc: BaseException) -> bool:
    from services.adapters.db import is_connection_error

    names = {cls.__name__ for cls in type(exc).__mro__}
    return is_connection_error(exc) or "DatabaseUnavailable" in names or "InterfaceError" in names


def _record_failure(container: Container, event: dict[str, Any], error: str, permanent: bool = False) -> None:
    """Keep the failed attempt, in its own short transaction (the effect's one was rolled back)."""
    from sqlalchemy import func
    from sqlalchemy.dialects.postgresql import insert

    from services.core.models import StripeEvent, StripeEventStatus

    done = (StripeEventStatus.processed, StripeEventStatus.ignored)
    status = StripeEventStatus.failed_permanently if permanent else StripeEventStatus.failed
    stmt = insert(StripeEvent).values(
        id=event["id"],
        type=event["type"],
        payload=event,
        status=status,
        attempts=1,
        error=error,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[StripeEvent.id],
        set_={
            "status": status,
            "attempts": StripeEvent.attempts + 1,
            "error": error,
            "updated_at": func.now(),
        },
        # A concurrent delivery may have succeeded meanwhile: never turn its success into a failure.
        where=StripeEvent.status.not_in(done),
    )
    with container.uow() as uow:
        uow.session.execute(stmt)
        uow.commit()


@functools.cache
def _event_insert() -> Any:
    """INSERT of a new event, already marked done (see `_run`); no row when its id is stored."""
    from sqlalchemy import func
    from sqlalchemy.dialects.postgresql import insert

    from services.core.models import StripeEvent

    return (
        insert(StripeEvent)
        .values(attempts=1, processed_at=func.now())
        .on_conflict_do_nothing(index_elements=[StripeEvent.id])
        .returning(StripeEvent.id)
    )


def _run(
    container: Container, event: dict[str, Any], *, replay: bool = False, defer_receipt: bool = False
) -> WebhookOutcome:
    """Insert-or-lock the event row, apply the effect and mark it done, in one transaction.

    A new event is inserted already marked done: if the effect fails, the whole transaction rolls
    back, so the mark is only ever seen together with the effect. The insert's row lock (or the
    `FOR UPDATE` on an existing row) makes simultaneous deliveries of one event wait for each other.
    """
    from sqlalchemy import func, select, update

    from services.core.models import StripeEvent, StripeEventStatus

    event = storable(event)
    event_id, event_type = event["id"], event["type"]
    # A redelivery of an event that can never apply is answered like a duplicate, not retried.
    done = (StripeEventStatus.processed, StripeEventStatus.ignored, StripeEventStatus.failed_permanently)
    with container.uow() as uow:
        session = uow.session
        inserted = None
        if not replay:
            final = StripeEventStatus.processed if event_type in HANDLED_TYPES else StripeEventStatus.ignored
            # Core, with a statement built once: this runs for every delivery.
            values = {"id": event_id, "type": event_type, "payload": event, "status": final}
            inserted = session.connection().execute(_event_insert(), values).first()
        if inserted is None:
            row = session.execute(
                select(StripeEvent.status, StripeEvent.type, StripeEvent.payload)
                .where(StripeEvent.id == event_id)
                .with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"Event {event_id} is not stored; nothing to replay.")
            if not replay and row.status in done:
                return WebhookOutcome(event_id, event_type, "duplicate", f"already {row.status.value}")
            if replay:
                event, event_type = row.payload, row.type
        try:
            effect = _apply(session, event)
        except Exception as exc:
            error = _error_text(exc)
            # A dead connection cannot roll back; closing the session discards it anyway.
            with contextlib.suppress(Exception):
                uow.rollback()
            if _is_db_unavailable(exc):
                raise
            permanent = getattr(exc, "permanent", False) is True
            try:
                _record_failure(container, event, error, permanent=permanent)
            except Exception as record_exc:  # noqa: BLE001 - the original failure is what matters
                log.error("could not record the failed attempt of %s: %s", event_id, _error_text(record_exc))
                permanent = False  # not stored: let Stripe deliver it again
            if permanent:
                log.warning("event %s can never apply, stored as failed_permanently: %s", event_id, error)
                return WebhookOutcome(event_id, event_type, "failed_permanently", error)
            raise WebhookHandlingFailed(event_id, f"Event {event_id} ({event_type}) failed: {error}") from exc
        queued = None
        if effect is not None:
            from services.payments.purchases import queue_receipt

            # In the event's transaction: committed together with the purchase, or not at all.
            queued = queue_receipt(session, container.settings.app_url, effect)
        if inserted is None:
            session.execute(
                update(StripeEvent)
                .where(StripeEvent.id == event_id)
                .values(
                    status=StripeEventStatus.processed if effect is not None else StripeEventStatus.ignored,
                    attempts=StripeEvent.attempts + 1,
                    error=None,
                    processed_at=func.now(),
                    updated_at=func.now(),
                )
            )
        uow.commit()
    if effect is None:
        return WebhookOutcome(event_id, event_type, "ignored", "type not handled")
    action = effect.action + (f" ({effect.detail})" if effect.detail else "")
    if effect.amount_mismatch:
        log.warning(
            "event %s: purchase %s paid %s cents, price is %s; recorded in the audit log",
            event_id,
            effect.purchase_id,
            effect.received_cents,
            effect.expected_cents,
        )
        action += f"; amount mismatch: paid {effect.received_cents}, price {effect.expected_cents}"
    outcome = WebhookOutcome(event_id, event_type, "processed", action, effect.purchase_id)
    if effect.action != "completed":
        return outcome
    if queued is None:
        return outcome
    if defer_receipt:
        return replace(outcome, email="queued", receipt=queued)
    return replace(outcome, email=_send_receipt(container, queued, event_id))


def send_deferred_receipt(container: Container, outcome: WebhookOutcome) -> WebhookOutcome:
    """The receipt of an outcome returned with `email="queued"` is already in the outbox, committed
    with the purchase; the listener's outbox drainer sends it. Nothing to do here."""
    return outcome


def _send_receipt(container: Container, queued: Any, event_id: str) -> str:
    """After the commit, try the queued receipt once; a failure stays queued for the next drain and is
    never a reason to make Stripe retry."""
    from services.email.outbox import deliver_now

    delivery = deliver_now(container, queued)
    if delivery is None:
        return "none"
    if delivery.status == "sent":
        return "sent"
    if delivery.status == "busy":
        return "queued"
    log.error("receipt email for event %s (message %s) failed: %s", event_id, queued, delivery.error)
    return "failed"


def process_event(
    container: Container, raw_body: bytes, event: dict[str, Any], *, defer_receipt: bool = False
) -> WebhookOutcome:
    """Apply one verified delivery exactly once; WebhookHandlingFailed (answer 5xx) when it failed.

    `raw_body` is the verified request body; the parsed `event` is what gets stored and applied.
    The receipt email is queued in the event's transaction (the outbox) and sent after the commit:
    here, or with `defer_receipt` by the caller's outbox drainer (the listener's).
    """
    del raw_body  # the stored payload is the parsed event (JSONB); the signature was checked on the bytes
    return _run(container, event, defer_receipt=defer_receipt)


def replay_event(container: Container, event_id: str) -> WebhookOutcome:
    """Re-apply a stored event through the same handler (effects are idempotent)."""
    return _run(container, {"id": event_id, "type": ""}, replay=True)


# --- operator views ----------------------------------------------------------------------------------


def _created(payload: Any) -> datetime | None:
    created = payload.get("created") if isinstance(payload, dict) else None
    if isinstance(created, int | float):
        return datetime.fromtimestamp(created, UTC)
    return None


def list_events(
    container: Container,
    status: str | None = None,
    type: str | None = None,
    since: timedelta | None = None,
    limit: int = 50,
) -> list[StoredEvent]:
    """Stored events, newest first, filtered by status, type and age."""
    from sqlalchemy import select

    from services.core.models import StripeEvent, StripeEventStatus

    if limit < 1:
        raise ValidationError("The limit must be at least 1.", field="limit")
    query = select(StripeEvent).order_by(StripeEvent.received_at.desc(), StripeEvent.id).limit(limit)
    if status:
        try:
            wanted = StripeEventStatus(status.strip().lower())
        except ValueError:
            choices = ", ".join(s.value for s in StripeEventStatus)
            raise ValidationError(f"Unknown status {status!r}: use one of {choices}.") from None
        query = query.where(StripeEvent.status == wanted)
    if type:
        query = query.where(StripeEvent.type == type.strip())
    if since is not None:
        query = query.where(StripeEvent.received_at >= datetime.now(UTC) - since)
    with container.uow() as uow:
        rows = uow.session.scalars(query).all()
        return [
            StoredEvent(
                id=r.id,
                type=r.type,
                status=r.status.value,
                attempts=r.attempts,
                error=r.error,
                created=_created(r.payload),
                received_at=r.received_at,
                processed_at=r.processed_at,
            )
            for r in rows
        ]


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"cannot read a Stripe event of type {type(obj).__name__}")


def backfill_events(container: Container, since: timedelta, dry_run: bool = False) -> BackfillReport:
    """List Stripe's events of the handled types since `since` ago; apply those never received or failed."""
    from sqlalchemy import select

    from services.core.models import StripeEvent, StripeEventStatus

    if since <= timedelta(0):
        raise ValidationError(
            "The backfill period must be a positive duration, like 2h or 3d.", field="since"
        )
    if since > STRIPE_EVENT_RETENTION:
        raise ValidationError(
            "Stripe keeps events for 30 days: the backfill period must be 30d or less.", field="since"
        )
    start = datetime.now(UTC) - since
    events = [
        _as_dict(e) for e in container.stripe.iter_events(created_gte=start, types=sorted(HANDLED_TYPES))
    ]
    events.sort(key=lambda e: (e.get("created") or 0, e.get("id") or ""))
    ids = [e["id"] for e in events if e.get("id")]
    with container.uow() as uow:
        stored = dict(
            uow.session.execute(
                select(StripeEvent.id, StripeEvent.status).where(StripeEvent.id.in_(ids))
            ).all()
        )
    done = (StripeEventStatus.processed, StripeEventStatus.ignored, StripeEventStatus.failed_permanently)
    items: list[BackfillItem] = []
    already = 0
    for event in events:
        status = stored.get(str(event.get("id")))
        if status in done:
            already += 1
            continue
        shown = status.value if status is not None else None
        try:
            parse_event(json.dumps(event).encode())
        except MalformedEvent as exc:
            items.append(
                BackfillItem(str(event.get("id")), str(event.get("type")), None, shown, "failed", str(exc))
            )
            continue
        if dry_run:
            items.append(BackfillItem(event["id"], event["type"], _created(event), shown, "would-apply"))
            continue
        try:
            outcome = _run(container, event)
        except WebhookHandlingFailed as exc:
            items.append(BackfillItem(event["id"], event["type"], _created(event), shown, "failed", str(exc)))
            continue
        items.append(
            BackfillItem(event["id"], event["type"], _created(event), shown, outcome.outcome, outcome.action)
        )
    return BackfillReport(since=start, dry_run=dry_run, listed=len(events), already_done=already, items=items)


def prune_events(container: Container, older_than: timedelta, dry_run: bool = False) -> PruneReport:
    """Delete processed and ignored events received before `older_than` ago; failed ones are kept."""
    from sqlalchemy import delete, func, select

    from services.core.models import StripeEvent, StripeEventStatus

    if older_than < MIN_PRUNE_AGE:
        raise ValidationError(
            "Keep at least 30 days of events (Stripe can still redeliver or list younger ones): "
            "the age must be 30d or more.",
            field="older_than",
        )
    cutoff = datetime.now(UTC) - older_than
    done = (StripeEventStatus.processed, StripeEventStatus.ignored)
    old = StripeEvent.received_at < cutoff
    with container.uow() as uow:
        session = uow.session
        kept = session.scalar(select(func.count()).where(old, StripeEvent.status.not_in(done))) or 0
        if dry_run:
            count = session.scalar(select(func.count()).where(old, StripeEvent.status.in_(done))) or 0
            return PruneReport(cutoff, True, count, kept)
        result = session.execute(delete(StripeEvent).where(old, StripeEvent.status.in_(done)))
        uow.commit()
        return PruneReport(cutoff, False, getattr(result, "rowcount", 0) or 0, kept)


def check_database(container: Container) -> str | None:
    """None when the database answers, else a short reason (no URL, no secret)."""
    from sqlalchemy import text

    last: BaseException | None = None
    # Twice: after a database restart the first pooled connection is stale; the retry gets a fresh one.
    for _ in range(2):
        try:
            with container.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return None
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
            last = exc
    return "database unreachable" if last is not None and _is_db_unavailable(last) else "database error"
