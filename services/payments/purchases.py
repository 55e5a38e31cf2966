"""Purchases through Stripe Checkout (roadmap P1-ECOM-001, risks 9.2/9.3): completion, failure, refunds
made outside codex, and the receipt email. Creating a checkout is `services.payments.checkout`.

Two kinds of entry points:
- the `apply_*` wrappers run their own transactions and send email after commit;
- `complete_purchase`, `fail_purchase` and `record_external_refund` run INSIDE the caller's transaction
  (the webhook listener stores the event in the same one; reconcile adds an audit row): they lock the
  purchase row, change it at most once (transitions are one-way, repeats are no-ops) and never commit.
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from services.core.audit import record_audit
from services.core.errors import NotFound, ValidationError
from services.core.models import Content, ContentPurchase, PurchaseStatus, StripeRefund, User
from services.core.money import Money

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from services.bootstrap import Container
    from services.email.notifications import EmailResult

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "stripe"
_INTENT_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
PAID_STATUSES = ("paid", "no_payment_required")


class PurchaseNotFoundYet(NotFound):
    """A Stripe object names a purchase id the database does not have (yet): the web app's insert may
    not be committed, so the webhook answers 5xx and Stripe retries later."""


class UnusablePurchaseReference(ValidationError):
    """A Stripe object's purchaseId is not a UUID (a NUL, a typo, another system's id): no purchase
    can ever match it, so the event is stored as failed permanently instead of being retried."""

    permanent = True


@dataclass(frozen=True)
class Receipt:
    """What the purchase-receipt email needs, read inside the transaction, sent after the commit."""

    purchase_id: str
    recipient: str
    customer_name: str
    content_id: str
    content_title: str
    amount_cents: int
    currency: str
    purchase_date: datetime


@dataclass
class PurchaseOutcome:
    """What one call did to one purchase. `action` is one of:

    completed, already_completed, pending_unpaid, failed, already_failed, refund_recorded,
    refund_id_recorded, refunded_before_completion, already_refunded, partial_refund, ignored,
    not_found.
    """

    purchase_id: str | None
    action: str
    amount_mismatch: bool = False
    expected_cents: int | None = None
    received_cents: int | None = None
    receipt: Receipt | None = None
    detail: str = ""
    session_id: str | None = None
    email: EmailResult | None = field(default=None, compare=False)

    @property
    def changed(self) -> bool:
        return self.action in (
            "completed",
            "failed",
            "refund_recorded",
            "refund_id_recorded",
            "refunded_before_completion",
        )

    @property
    def newly_completed(self) -> bool:
        return self.action == "completed"


def live_purchase(db: Session, customer_id: uuid.UUID, content_id: uuid.UUID) -> ContentPurchase | None:
    return db.scalars(
        select(ContentPurchase).where(
            ContentPurchase.customer_id == customer_id,
            ContentPurchase.content_id == content_id,
            ContentPurchase.status.in_((PurchaseStatus.pending, PurchaseStatus.completed)),
            ContentPurchase.refunded_at.is_(None),
        )
    ).first()


def lock_purchase(db: Session, purchase_id: uuid.UUID) -> ContentPurchase | None:
    return db.scalars(
        select(ContentPurchase)
        .where(ContentPurchase.id == purchase_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def _lock_by(db: Session, *conditions: Any) -> ContentPurchase | None:
    return db.scalars(
        select(ContentPurchase)
        .where(*conditions)
        .order_by(ContentPurchase.created_at.desc())
        .limit(1)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def _metadata_purchase_id(obj: dict[str, Any]) -> tuple[str | None, uuid.UUID | None]:
    metadata = obj.get("metadata") or {}
    raw = metadata.get("purchaseId") if isinstance(metadata, dict) else None
    if not raw:
        return None, None
    try:
        return str(raw), uuid.UUID(str(raw))
    except ValueError:
        return str(raw), None


def _id_of(value: Any) -> str | None:
    """Stripe fields like `payment_intent` are an id, or the object when expanded."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


@functools.cache
def _receipt_lock_statement(by: str) -> Any:
    """`SELECT … FOR UPDATE` of the newest purchase whose `by` column equals :key, with what the
    receipt needs (customer, title) in the same round trip; built once (this runs per delivery)."""
    purchase = ContentPurchase.__table__
    return (
        select(
            purchase,
            User.email.label("receipt_email"),
            User.name.label("receipt_name"),
            Content.title.label("receipt_title"),
        )
        .select_from(purchase)
        .outerjoin(User, User.id == purchase.c.customer_id)
        .outerjoin(Content, Content.id == purchase.c.content_id)
        .where(purchase.c[by] == bindparam("key"))
        .order_by(purchase.c.created_at.desc())
        .limit(1)
        .with_for_update(of=purchase)
    )


def _lock_for_receipt(db: Session, by: str, key: Any) -> Any:
    """`_lock_by` on SQLAlchemy Core with the receipt's facts: a plain row, not an ORM object."""
    return db.connection().execute(_receipt_lock_statement(by), {"key": key}).first()


def _lock_orm(db: Session, by: str, key: Any) -> ContentPurchase | None:
    return _lock_by(db, getattr(ContentPurchase, by) == key)


def _purchase_for_session(db: Session, checkout_session: dict[str, Any], lock: Any = None) -> Any:
    """The purchase a Checkout Session belongs to (metadata.purchaseId, else the stored session id),
    locked by `lock(db, column, value)` (default: an ORM object).

    Raises PurchaseNotFoundYet when the session names a purchase the database does not have.
    """
    lock = lock or _lock_orm
    raw, purchase_id = _metadata_purchase_id(checkout_session)
    session_id = checkout_session.get("id")
    if purchase_id is not None:
        row = lock(db, "id", purchase_id)
        if row is not None:
            return row
    if session_id:
        row = lock(db, "stripe_checkout_session_id", str(session_id))
        if row is not None:
            return row
    if raw is not None and purchase_id is None:
        raise UnusablePurchaseReference(
            f"The purchaseId {raw[:64]!r} of checkout session {session_id} is not a UUID; "
            "no purchase can match it."
        )
    if raw is not None:
        raise PurchaseNotFoundYet(
            f"Purchase {raw} (checkout session {session_id}) is not in the database yet; retry later."
        )
    return None


def complete_purchase(db: Session, checkout_session: dict[str, Any]) -> PurchaseOutcome:
    """A paid Checkout Session completes its purchase, once; the amount paid is checked and recorded."""
    session_id = checkout_session.get("id")
    row = _purchase_for_session(db, checkout_session, lock=_lock_for_receipt)
    if row is None:
        return PurchaseOutcome(
            None, "not_found", detail="no purchase for this session", session_id=session_id
        )
    pid = str(row.id)
    if row.stripe_checkout_session_id and session_id and row.stripe_checkout_session_id != session_id:
        return PurchaseOutcome(
            pid,
            "ignored",
            detail=f"purchase belongs to session {row.stripe_checkout_session_id}",
            session_id=session_id,
        )
    expected = row.price_paid_cents
    if row.status == PurchaseStatus.completed:
        return PurchaseOutcome(
            pid,
            "already_completed",
            expected_cents=expected,
            received_cents=row.amount_received_cents,
            session_id=session_id,
        )
    if checkout_session.get("payment_status") not in PAID_STATUSES:
        return PurchaseOutcome(
            pid,
            "pending_unpaid",
            expected_cents=expected,
            detail="payment not settled yet",
            session_id=session_id,
        )
    if row.status == PurchaseStatus.failed and _has_other_live(db, row):
        # Paid after we gave up on it, and the customer has started another purchase since.
        return PurchaseOutcome(
            pid,
            "ignored",
            amount_mismatch=False,
            expected_cents=expected,
            detail="paid, but the purchase was failed and another live purchase exists; needs a person",
            session_id=session_id,
        )
    received = checkout_session.get("amount_total")
    received = int(received) if received is not None else None
    currency = (checkout_session.get("currency") or row.currency or "usd").lower()
    mismatch = received is not None and (received != expected or currency != row.currency)
    was = row.status.value
    intent = _id_of(checkout_session.get("payment_intent")) or row.stripe_payment_intent_id
    refunded_cents, fully, latest = 0, False, None
    if intent:
        # Serializes with a refund event of the same payment (see record_external_refund).
        _lock_payment_intent(db, intent)
        refunded_cents, fully, latest = _refunded_so_far(db, intent)
    changes: dict[str, Any] = {
        "status": PurchaseStatus.completed,
        "stripe_payment_intent_id": intent,
        "stripe_checkout_session_id": row.stripe_checkout_session_id or session_id,
        "amount_received_cents": received,
        "purchased_at": datetime.now(UTC),
    }
    paid = received if received is not None else expected
    if row.refunded_at is not None or fully or (refunded_cents > 0 and refunded_cents >= paid):
        # Stripe does not order events: the refund came first. Recorded as paid and refunded; no
        # access, no receipt.
        refund_id = row.stripe_refund_id or (latest.id if latest else None)
        changes.update(
            refunded_at=row.refunded_at or (latest.refunded_at if latest else None) or datetime.now(UTC),
            stripe_refund_id=refund_id,
            refund_reason=row.refund_reason or "Refunded in Stripe before the payment was recorded",
        )
        _update_purchase(db, row.id, changes)
        record_audit(
            db,
            SYSTEM_ACTOR,
            "purchase.refunded_before_completion",
            "purchase",
            row.id,
            {"session_id": session_id, "payment_intent": intent, "refund_id": refund_id},
        )
        db.flush()  # the audit row's failure (if any) belongs to this effect, not to the commit
        return PurchaseOutcome(
            pid,
            "refunded_before_completion",
            expected_cents=expected,
            received_cents=received,
            detail="refunded in Stripe before the completion arrived; no access, no receipt",
            session_id=session_id,
        )
    if mismatch:
        record_audit(
            db,
            SYSTEM_ACTOR,
            "purchase.amount_mismatch",
            "purchase",
            row.id,
            {
                "expected_cents": expected,
                "received_cents": received,
                "currency": currency,
                "session_id": session_id,
            },
        )
    _update_purchase(db, row.id, changes)
    db.flush()  # the audit row of a mismatch, inside the effect (a failure here is the effect's)
    return PurchaseOutcome(
        pid,
        "completed",
        amount_mismatch=mismatch,
        expected_cents=expected,
        received_cents=received,
        receipt=_receipt(row, paid, currency, changes["purchased_at"]),
        detail="" if was == "pending" else f"was {was}",
        session_id=session_id,
    )


def _has_other_live(db: Session, row: ContentPurchase) -> bool:
    other = live_purchase(db, row.customer_id, row.content_id)
    return other is not None and other.id != row.id


def fail_purchase(db: Session, checkout_session: dict[str, Any]) -> PurchaseOutcome:
    """An expired session or a failed delayed payment fails a pending purchase; never a completed one."""
    session_id = checkout_session.get("id")
    row = _purchase_for_session(db, checkout_session)
    if row is None:
        return PurchaseOutcome(
            None, "not_found", detail="no purchase for this session", session_id=session_id
        )
    pid = str(row.id)
    if row.status == PurchaseStatus.completed:
        return PurchaseOutcome(pid, "already_completed", session_id=session_id)
    if row.status == PurchaseStatus.failed:
        return PurchaseOutcome(pid, "already_failed", session_id=session_id)
    if row.stripe_checkout_session_id and session_id and row.stripe_checkout_session_id != session_id:
        return PurchaseOutcome(
            pid,
            "ignored",
            detail=f"purchase belongs to session {row.stripe_checkout_session_id}",
            session_id=session_id,
        )
    if checkout_session.get("payment_status") == "paid":
        return PurchaseOutcome(pid, "ignored", detail="the session is paid", session_id=session_id)
    row.status = PurchaseStatus.failed
    row.stripe_checkout_session_id = row.stripe_checkout_session_id or session_id
    db.flush()
    return PurchaseOutcome(pid, "failed", session_id=session_id)


def record_external_refund(db: Session, charge_or_refund: dict[str, Any]) -> PurchaseOutcome:
    """A refund made in Stripe (its dashboard, or `codex refund` seen again) ends access here too.

    Takes a `charge` (charge.refunded: the cumulative amount, no refund id since API 2022-11-15) or a
    `refund` object (refund.created/updated: its id and amount). Every one is remembered in
    `stripe_refunds` per payment intent, so partial refunds add up, and a refund whose purchase is not
    known yet (it arrived before checkout.session.completed) is applied by the completion. A partial
    total is `partial_refund`; a repeat is `already_refunded`, or `refund_id_recorded` when it
    brings the refund id a charge event could not.
    """
    obj = charge_or_refund
    kind = obj.get("object")
    if kind not in ("refund", "charge"):
        return PurchaseOutcome(None, "ignored", detail=f"not a charge or refund: {kind}")
    payment_intent = _id_of(obj.get("payment_intent"))
    row = _refund_target(db, obj, payment_intent)
    if payment_intent:
        # The completion of the same payment takes this lock before it reads `stripe_refunds`: either
        # it committed first (found below) or it will see what this transaction remembers.
        _lock_payment_intent(db, payment_intent)
        if row is None:
            row = _lock_by(db, ContentPurchase.stripe_payment_intent_id == payment_intent)
        _remember(db, obj, payment_intent)
        refunded_cents, fully, latest = _refunded_so_far(db, payment_intent)
    else:
        fully = obj.get("refunded") is True
        refunded_cents = int((obj.get("amount_refunded") if kind == "charge" else obj.get("amount")) or 0)
        latest = None
    if kind == "refund" and obj.get("status") not in ("succeeded", "pending"):
        return PurchaseOutcome(
            str(row.id) if row else None, "ignored", detail=f"refund status {obj.get('status')}"
        )
    if row is None:
        return PurchaseOutcome(
            None,
            "not_found",
            detail=f"no purchase for payment {payment_intent} yet; kept for its completion",
        )
    pid = str(row.id)
    refund_id = latest.id if latest else (obj.get("id") if kind == "refund" else _latest_refund_id(obj))
    paid = row.amount_received_cents if row.amount_received_cents is not None else row.price_paid_cents
    if row.refunded_at is not None:
        if refund_id and not row.stripe_refund_id:
            row.stripe_refund_id = refund_id
            db.flush()
            return PurchaseOutcome(
                pid, "refund_id_recorded", expected_cents=paid, received_cents=refunded_cents
            )
        return PurchaseOutcome(pid, "already_refunded", expected_cents=paid, received_cents=refunded_cents)
    if not (fully or refunded_cents >= paid):
        return PurchaseOutcome(
            pid,
            "partial_refund",
            expected_cents=paid,
            received_cents=refunded_cents,
            detail=f"{refunded_cents} of {paid} cents refunded in Stripe; access kept",
        )
    when = latest.refunded_at if latest and latest.refunded_at else _when(obj) if kind == "refund" else None
    reason = latest.reason if latest else (obj.get("reason") if kind == "refund" else None)
    row.refunded_at = when or datetime.now(UTC)
    row.stripe_refund_id = refund_id
    row.refund_reason = f"Refunded in Stripe ({reason})" if reason else "Refunded in Stripe"
    row.stripe_payment_intent_id = row.stripe_payment_intent_id or payment_intent
    if row.status == PurchaseStatus.pending:
        # Refunded before we ever saw it paid: the money went back, so access never starts.
        row.status = PurchaseStatus.failed
    record_audit(
        db,
        SYSTEM_ACTOR,
        "purchase.external_refund",
        "purchase",
        row.id,
        {"refund_id": refund_id, "payment_intent": payment_intent, "amount_cents": refunded_cents},
    )
    db.flush()
    return PurchaseOutcome(pid, "refund_recorded", expected_cents=paid, received_cents=refunded_cents)


def _refund_target(db: Session, obj: dict[str, Any], payment_intent: str | None) -> ContentPurchase | None:
    row = None
    if payment_intent:
        row = _lock_by(db, ContentPurchase.stripe_payment_intent_id == payment_intent)
    if row is None:
        _, purchase_id = _metadata_purchase_id(obj)
        if purchase_id is not None:
            row = lock_purchase(db, purchase_id)
    return row


def _when(obj: dict[str, Any]) -> datetime | None:
    created = obj.get("created")
    return datetime.fromtimestamp(int(created), UTC) if isinstance(created, int | float) else None


def _lock_payment_intent(db: Session, payment_intent: str) -> None:
    """A transaction-scoped advisory lock per payment intent (safe through a transaction pooler)."""
    db.connection().execute(_INTENT_LOCK, {"key": f"codex-pi:{payment_intent}"})


def _remember(db: Session, obj: dict[str, Any], payment_intent: str) -> None:
    """Upsert what this refund or charge says into `stripe_refunds`."""
    kind = obj.get("object")
    rows: list[dict[str, Any]] = []
    if kind == "charge":
        rows.append(
            dict(
                id=str(obj.get("id")),
                kind="charge",
                payment_intent_id=payment_intent,
                amount_cents=int(obj.get("amount_refunded") or 0),
                fully_refunded=obj.get("refunded") is True,
                status=None,
                reason=None,
                refunded_at=None,
            )
        )
        refunds = obj.get("refunds")  # only when a caller expanded it
        embedded = refunds.get("data") if isinstance(refunds, dict) else None
        for refund in embedded or []:
            if isinstance(refund, dict) and refund.get("id"):
                rows.append(_refund_row({**refund, "object": "refund"}, payment_intent))
    elif obj.get("id"):
        rows.append(_refund_row(obj, payment_intent))
    for values in rows:
        # clock_timestamp: two refunds first seen in one transaction still keep the order they came in.
        stmt = insert(StripeRefund).values(**values, created_at=func.clock_timestamp())
        excluded = stmt.excluded
        db.execute(
            stmt.on_conflict_do_update(
                index_elements=[StripeRefund.id],
                set_={
                    "amount_cents": func.greatest(StripeRefund.amount_cents, excluded.amount_cents),
                    "fully_refunded": StripeRefund.fully_refunded | excluded.fully_refunded,
                    "status": func.coalesce(excluded.status, StripeRefund.status),
                    "reason": func.coalesce(excluded.reason, StripeRefund.reason),
                    "refunded_at": func.coalesce(StripeRefund.refunded_at, excluded.refunded_at),
                    "updated_at": func.now(),
                },
            )
        )


def _refund_row(refund: dict[str, Any], payment_intent: str) -> dict[str, Any]:
    return dict(
        id=str(refund["id"]),
        kind="refund",
        payment_intent_id=payment_intent,
        amount_cents=int(refund.get("amount") or 0),
        fully_refunded=False,
        status=refund.get("status"),
        reason=refund.get("reason"),
        refunded_at=_when(refund),
    )


@functools.cache
def _refunds_statement() -> Any:
    refunds = StripeRefund.__table__
    return select(refunds).where(refunds.c.payment_intent_id == bindparam("payment_intent"))


def _refunded_so_far(db: Session, payment_intent: str) -> tuple[int, bool, Any]:
    """(cents refunded, fully refunded, the latest refund) for a payment intent, from everything seen."""
    rows = db.connection().execute(_refunds_statement(), {"payment_intent": payment_intent}).all()
    refunds = [r for r in rows if r.kind == "refund" and r.status in ("succeeded", "pending", None)]
    charges = [r for r in rows if r.kind == "charge"]
    total = max(sum(r.amount_cents for r in refunds), max((r.amount_cents for r in charges), default=0))
    fully = any(r.fully_refunded for r in charges)
    epoch = datetime.fromtimestamp(0, UTC)
    latest = max(refunds, key=lambda r: (r.refunded_at or epoch, r.created_at, r.id)) if refunds else None
    return total, fully, latest


def _latest_refund_id(charge: dict[str, Any]) -> str | None:
    refunds = charge.get("refunds")
    data = refunds.get("data") if isinstance(refunds, dict) else None
    if data:
        latest = max(data, key=lambda r: r.get("created") or 0)
        return latest.get("id")
    return None


def _receipt(row: Any, amount_cents: int, currency: str, purchased_at: datetime) -> Receipt | None:
    """What the email needs, from the row `_lock_for_receipt` read (customer and title joined)."""
    if row.receipt_email is None or row.receipt_title is None:
        return None
    return Receipt(
        purchase_id=str(row.id),
        recipient=row.receipt_email,
        customer_name=row.receipt_name,
        content_id=str(row.content_id),
        content_title=row.receipt_title,
        amount_cents=amount_cents,
        currency=currency,
        purchase_date=purchased_at,
    )


def _update_purchase(db: Session, purchase_id: uuid.UUID, changes: dict[str, Any]) -> None:
    """One UPDATE of a purchase locked by `_lock_for_receipt` (Core: no ORM object to flush)."""
    db.connection().execute(_update_statement(), {"purchase_id": purchase_id, **changes})


@functools.cache
def _update_statement() -> Any:
    # The SET columns are the keys of the parameters; `updated_at` is the column's own onupdate.
    return update(ContentPurchase).where(ContentPurchase.id == bindparam("purchase_id"))


# --- after the commit -----------------------------------------------------------------------------


def queue_receipt(db: Session, app_url: str, outcome: PurchaseOutcome) -> uuid.UUID | None:
    """Queue the purchase-receipt email in the purchase's own transaction (the outbox); None when
    there is nothing to send. The key is the purchase's, so the receipt is queued and sent once."""
    from services.email.outbox import queue_email

    receipt = outcome.receipt
    if receipt is None or outcome.action != "completed":
        return None
    app_url = app_url.rstrip("/")
    return queue_email(
        db,
        "purchase-receipt",
        receipt.recipient,
        {
            "customerName": receipt.customer_name,
            "contentTitle": receipt.content_title,
            "amount": Money(receipt.amount_cents, receipt.currency),
            "purchaseDate": receipt.purchase_date,
            "accessUrl": f"{app_url}/content/{receipt.content_id}",
        },
        idempotency_key=f"purchase-receipt-{receipt.purchase_id}",
    )


def _apply(container: Container, fn: Any, obj: dict[str, Any]) -> PurchaseOutcome:
    from services.email.outbox import deliver_now

    with container.uow() as uow:
        outcome = fn(uow.session, obj)
        queued = queue_receipt(uow.session, container.settings.app_url, outcome)
        uow.commit()
    delivery = deliver_now(container, queued)
    if delivery is not None:
        from services.email.notifications import EmailResult

        sent = delivery.status == "sent"
        outcome.email = EmailResult(sent, delivery.provider_id, delivery.error, delivery.attempts)
    return outcome


def apply_checkout_completed(container: Container, checkout_session: dict[str, Any]) -> PurchaseOutcome:
    """complete_purchase in its own transaction, then the receipt email."""
    return _apply(container, complete_purchase, checkout_session)


def apply_checkout_failed(container: Container, checkout_session: dict[str, Any]) -> PurchaseOutcome:
    """fail_purchase in its own transaction."""
    return _apply(container, fail_purchase, checkout_session)


def apply_external_refund(container: Container, charge_or_refund: dict[str, Any]) -> PurchaseOutcome:
    """record_external_refund in its own transaction."""
    return _apply(container, record_external_refund, charge_or_refund)
