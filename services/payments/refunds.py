"""Refunding a purchase: eligibility under a row lock, the Stripe refund, the record, audit, email.

The order matters (roadmap P1-ECOM-002, DESIGN.md "Reliability rules"):

1. lock the purchase row (`SELECT ... FOR UPDATE`) and check the rules in the transaction that will
   record the refund, so a second operator refunding the same purchase waits, then sees "already
   refunded";
2. refund at Stripe while holding the lock, with an idempotency key derived from the purchase id, so a
   rerun after a crash between Stripe and our commit gets the same refund back instead of a second one;
3. write refunded_at / refund_reason / stripe_refund_id / refunded_by and the audit row, commit;
4. only then email the customer; a failed email is reported and never undoes the refund.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from services.core.audit import record_audit
from services.core.errors import (
    CodexError,
    Conflict,
    ExternalServiceError,
    NeedsAttention,
    NotFound,
    ValidationError,
)
from services.core.lookup import parse_uuid, resolve_operator
from services.core.masking import mask_email
from services.core.models import Content, ContentPurchase, PurchaseStatus, User
from services.core.money import Money, format_money

if TYPE_CHECKING:
    from services.bootstrap import Container

REFUND_WINDOW = timedelta(days=30)
MIN_REASON_LENGTH = 10
STRIPE_REFUND_REASON = "requested_by_customer"
# Stripe caps a metadata value at 500 characters; the whole reason stays in our row and audit log.
STRIPE_METADATA_VALUE_MAX = 500
AUDIT_ACTION = "purchase.refund"


def refund_idempotency_key(purchase_id: uuid.UUID | str) -> str:
    """The Stripe idempotency key of a purchase's refund: the same on every run for the same purchase."""
    return f"refund-{purchase_id}"


@dataclass(frozen=True)
class RefundRequest:
    purchase_id: str
    reason: str
    operator_email: str | None = None  # `--by`; None means CODEX_OPERATOR_EMAIL
    override_window: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class EmailOutcome:
    """What happened to the refund-confirmation email (sent after the refund was committed)."""

    sent: bool
    message_id: str | None
    error: str | None
    attempts: int


@dataclass(frozen=True)
class RefundResult:
    """A refund (or, with dry_run, the refund that would happen). The customer email is masked."""

    purchase_id: uuid.UUID
    dry_run: bool
    refunded: bool
    refund_id: str | None  # Stripe's refund id; None for a free purchase or a dry run
    free: bool  # 0 cents, no payment intent: access is revoked without calling Stripe
    amount_cents: int
    currency: str
    amount: str  # formatted, e.g. "$9.99"
    customer: str
    content_title: str
    purchased_at: datetime
    days_since_purchase: int
    outside_window: bool
    override_window: bool
    payment_intent: str | None
    operator: str
    refunded_at: datetime | None = None
    email: EmailOutcome | None = None


# ------------------------------------------------------------------------------------------ rules


def validate_request(request: RefundRequest) -> tuple[uuid.UUID, str]:
    """The purchase id as a UUID and the stripped reason; ValidationError (exit 2) otherwise."""
    purchase_id = parse_uuid(request.purchase_id.strip(), "purchase id")
    reason = (request.reason or "").strip()
    if len(reason) < MIN_REASON_LENGTH:
        raise ValidationError(f"Refund reason must be at least {MIN_REASON_LENGTH} characters.")
    return purchase_id, reason


def _purchased_at(purchase: ContentPurchase) -> datetime:
    return purchase.purchased_at or purchase.created_at


def _check_eligible(
    purchase: ContentPurchase | None, purchase_id: uuid.UUID, override_window: bool, now: datetime
) -> ContentPurchase:
    if purchase is None:
        raise NotFound(f"Purchase not found: {purchase_id}.")
    if purchase.status != PurchaseStatus.completed:
        raise Conflict(f"Purchase not completed (its status is {purchase.status.value}); nothing to refund.")
    if purchase.refunded_at is not None:
        ref = f", Stripe refund {purchase.stripe_refund_id}" if purchase.stripe_refund_id else ""
        raise Conflict(f"Purchase already refunded (on {purchase.refunded_at:%Y-%m-%d %H:%M} UTC{ref}).")
    age = now - _purchased_at(purchase)
    if age > REFUND_WINDOW and not override_window:
        raise Conflict(
            f"Refund window expired (30 days): purchased {age.days} days ago on "
            f"{_purchased_at(purchase):%Y-%m-%d}; override the window to refund anyway.",
            field="override_window",
        )
    if purchase.price_paid_cents > 0 and not purchase.stripe_payment_intent_id:
        raise Conflict(
            f"Purchase of {format_money(purchase.price_paid_cents, purchase.currency)} has no Stripe "
            "payment intent, so it cannot be refunded through Stripe."
        )
    return purchase


def _is_free(purchase: ContentPurchase) -> bool:
    return purchase.price_paid_cents == 0


def _load(session: Any, purchase_id: uuid.UUID, lock: bool) -> ContentPurchase | None:
    query = select(ContentPurchase).where(ContentPurchase.id == purchase_id)
    if lock:
        # populate_existing: the row as it is after the lock was granted, never a cached copy.
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).first()


def _result(
    purchase: ContentPurchase,
    customer: User,
    content: Content,
    operator: User,
    override_window: bool,
    now: datetime,
    dry_run: bool,
) -> RefundResult:
    age = now - _purchased_at(purchase)
    return RefundResult(
        purchase_id=purchase.id,
        dry_run=dry_run,
        refunded=False,
        refund_id=None,
        free=_is_free(purchase),
        amount_cents=purchase.price_paid_cents,
        currency=purchase.currency,
        amount=format_money(purchase.price_paid_cents, purchase.currency),
        customer=mask_email(customer.email),
        content_title=content.title,
        purchased_at=_purchased_at(purchase),
        days_since_purchase=age.days,
        outside_window=age > REFUND_WINDOW,
        override_window=override_window,
        payment_intent=purchase.stripe_payment_intent_id,
        operator=operator.email,
    )


# ---------------------------------------------------------------------------------- entry point


def refund_purchase(
    container: Container,
    request: RefundRequest,
    confirm: Callable[[RefundResult], None] | None = None,
) -> RefundResult:
    """Refund a purchase (see the module docstring for the order of operations).

    `confirm` (the CLI's question on a terminal) is shown the planned refund, read without a lock so
    nobody waits on a person; it raises to stop. The rules are checked again under the lock afterwards.
    With `request.dry_run` the plan is returned and nothing is changed or sent.
    """
    purchase_id, reason = validate_request(request)
    if request.dry_run or confirm is not None:
        plan = _plan(container, purchase_id, request)
        if request.dry_run:
            return plan
        if not plan.free:
            _ = container.stripe  # a missing STRIPE_SECRET_KEY is said before the question, not after
        assert confirm is not None
        confirm(plan)
    result, queued = _refund_locked(container, purchase_id, reason, request)
    email = _send_confirmation(container, queued)
    return replace(result, email=email)


def _plan(container: Container, purchase_id: uuid.UUID, request: RefundRequest) -> RefundResult:
    now = datetime.now(UTC)
    with container.uow() as uow:
        session = uow.session
        operator = resolve_operator(session, container.settings.operator_email(request.operator_email))
        purchase = _check_eligible(
            _load(session, purchase_id, lock=False), purchase_id, request.override_window, now
        )
        # Foreign keys guarantee both rows exist.
        customer = session.get_one(User, purchase.customer_id)
        content = session.get_one(Content, purchase.content_id)
        return _result(
            purchase, customer, content, operator, request.override_window, now, dry_run=request.dry_run
        )


def _refund_locked(
    container: Container, purchase_id: uuid.UUID, reason: str, request: RefundRequest
) -> tuple[RefundResult, Any]:
    """The transaction: lock, check, Stripe, record, audit, queue the email, commit. Returns the
    result and the queued email's id."""
    with container.uow() as uow:
        session = uow.session
        operator = resolve_operator(session, container.settings.operator_email(request.operator_email))
        purchase = _load(session, purchase_id, lock=True)
        now = datetime.now(UTC)
        purchase = _check_eligible(purchase, purchase_id, request.override_window, now)
        # Foreign keys guarantee both rows exist.
        customer = session.get_one(User, purchase.customer_id)
        content = session.get_one(Content, purchase.content_id)
        result = _result(purchase, customer, content, operator, request.override_window, now, dry_run=False)

        refund_id: str | None = None
        amount_cents = purchase.price_paid_cents
        if not result.free:
            refund = _stripe_refund(container, purchase, operator, reason)
            refund_id = str(refund["id"])
            amount_cents = int(refund.get("amount") or amount_cents)

        refunded_at = datetime.now(UTC)
        purchase.refunded_at = refunded_at
        purchase.refund_reason = reason
        purchase.stripe_refund_id = refund_id
        purchase.refunded_by = operator.id
        record_audit(
            session,
            operator,
            AUDIT_ACTION,
            "content_purchase",
            purchase.id,
            {
                "reason": reason,
                "stripe_refund_id": refund_id,
                "payment_intent": purchase.stripe_payment_intent_id,
                "amount_cents": amount_cents,
                "currency": purchase.currency,
                "free": result.free,
                "customer_id": str(purchase.customer_id),
                "content_id": str(purchase.content_id),
                "days_since_purchase": result.days_since_purchase,
                "outside_window": result.outside_window,
                "override_window": request.override_window,
            },
        )
        email_data = {
            "customerName": customer.name,
            "contentTitle": content.title,
            "refundAmount": Money(amount_cents, purchase.currency),
            "refundDate": refunded_at,
        }
        # In the refund's transaction: the confirmation is committed with the refund, or not at all.
        queued = _queue_confirmation(session, purchase.id, customer.email, email_data)
        try:
            uow.commit()
        except Exception as exc:
            if refund_id is None:
                raise
            # Stripe has refunded; only our record is missing. The same command reuses the same refund.
            raise NeedsAttention(
                f"Stripe refunded {refund_id} but recording it in the database failed "
                f"({type(exc).__name__}); run the same command again to record it (Stripe returns the "
                "same refund, it does not refund twice)."
            ) from None
        done = replace(
            result,
            refunded=True,
            refund_id=refund_id,
            refunded_at=refunded_at,
            amount_cents=amount_cents,
            amount=format_money(amount_cents, purchase.currency),
        )
        return done, queued


def _stripe_refund(
    container: Container, purchase: ContentPurchase, operator: User, reason: str
) -> dict[str, Any]:
    """The refund at Stripe; on failure nothing has been written and the lock is released by rollback."""
    from services.adapters.stripe_gateway import StripeUnavailable

    gateway = container.stripe
    try:
        return gateway.create_refund(
            payment_intent=purchase.stripe_payment_intent_id or "",
            reason=STRIPE_REFUND_REASON,
            metadata={
                "purchaseId": str(purchase.id),
                "requestedBy": str(operator.id),
                "internalReason": reason[:STRIPE_METADATA_VALUE_MAX],
            },
            idempotency_key=refund_idempotency_key(purchase.id),
        )
    except ExternalServiceError as exc:
        message = (getattr(exc, "stripe_message", None) or str(exc)).strip().rstrip(".")
        if getattr(exc, "kind", None) == "idempotency":
            raise ExternalServiceError(
                f"Payment refund failed: {message}. A refund of this purchase was already requested with "
                "another reason or operator; rerun with the first request's reason and operator to pick it "
                "up."
            ) from None
        if getattr(exc, "code", None) == "charge_already_refunded":
            raise ExternalServiceError(
                f"Payment refund failed: {message}. It was refunded outside this command (in Stripe's "
                "dashboard, or by a run over a day ago); `codex reconcile` records it here."
            ) from None
        if isinstance(exc, StripeUnavailable):
            sentence = str(exc).removesuffix("; try again later.").rstrip(".")
            if exc.may_have_succeeded:
                raise ExternalServiceError(
                    f"Payment refund not confirmed: {sentence}; Stripe may have made the refund, but "
                    "nothing was recorded here; running the same command again is safe (the same "
                    "idempotency key returns that refund instead of refunding twice)."
                ) from None
            raise ExternalServiceError(
                f"Payment refund failed: {sentence}; nothing was refunded and nothing was recorded, "
                "try again later."
            ) from None
        raise ExternalServiceError(f"Payment refund failed: {message}. Nothing was recorded.") from None


def _queue_confirmation(session: Any, purchase_id: Any, recipient: str, data: dict[str, Any]) -> Any:
    """Queue the refund-confirmation email in the refund's transaction; None when it cannot be queued
    (a bad address must not block a refund Stripe has made)."""
    from services.email.outbox import queue_email

    try:
        with session.begin_nested():
            return queue_email(
                session,
                "refund-confirmation",
                recipient,
                data,
                idempotency_key=f"refund-confirmation-{purchase_id}",
            )
    except CodexError:
        return None


def _send_confirmation(container: Container, queued: Any) -> EmailOutcome:
    """The refund-confirmation email, tried once right after the commit; never raises, the refund is
    already committed. A failed send stays in the outbox for `codex email drain`."""
    from services.email.outbox import deliver_now

    if queued is None:
        return EmailOutcome(
            sent=False, message_id=None, error="the customer's address cannot receive email.", attempts=0
        )
    delivery = deliver_now(container, queued)
    if delivery is None or delivery.status == "busy":
        return EmailOutcome(
            sent=False, message_id=None, error="it is queued and an outbox drainer is sending it.", attempts=0
        )
    if delivery.status == "sent":
        return EmailOutcome(
            sent=True, message_id=delivery.provider_id, error=None, attempts=delivery.attempts
        )
    error = (delivery.error or "unknown error").rstrip(".")
    if delivery.status == "retry":
        error += "; it stays queued and `codex email drain` retries it."
    else:
        error += "; it is parked dead (see `codex email queue --status dead`)."
    return EmailOutcome(sent=False, message_id=None, error=error, attempts=delivery.attempts)
