"""`codex checkout create`: a Stripe Checkout session for a customer and a piece of content, with its
pending purchase row (roadmap P1-ECOM-001, risks 9.2/9.3).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.core.checkout_limits import check_checkout_price
from services.core.errors import Conflict, NotFound
from services.core.masking import mask_email
from services.core.models import LIVE_PURCHASE, Content, ContentPurchase, ContentStatus, PurchaseStatus
from services.core.money import Money
from services.payments.purchases import live_purchase, lock_purchase

if TYPE_CHECKING:
    from services.bootstrap import Container

log = logging.getLogger(__name__)


LIVE_INDEX = "uq_content_purchases_live"
ALREADY_PURCHASED = "Content already purchased or pending"
NOT_AVAILABLE = "Content not found or not available"
_ = LIVE_PURCHASE  # the partial unique index the checkout race relies on (see models)


@dataclass(frozen=True)
class CheckoutResult:
    purchase_id: str
    checkout_url: str | None
    free: bool
    session_id: str | None
    content_title: str = ""
    amount: Money | None = None
    customer: str = ""  # masked email


# --- checkout -------------------------------------------------------------------------------------


def create_checkout(
    container: Container, customer_ref: str, content_id: str, org_ref: str | None = None
) -> CheckoutResult:
    """Start buying `content_id` for a customer (email or id): a Checkout Session URL, or free access.

    The pending purchase is committed before Stripe is called, so a paid session always has a row to
    complete; the partial unique index on live purchases decides between two concurrent calls.
    """
    from services.core.lookup import content_id_for, resolve_user

    content_uuid = content_id_for(container, content_id, org_ref)
    with container.uow() as uow:
        db = uow.session
        customer = resolve_user(db, customer_ref)
        # FOR SHARE until the pending purchase is committed: `codex content delete` (FOR UPDATE) either
        # runs first, and this finds the content gone, or waits and then sees the pending purchase.
        content = db.scalars(
            select(Content)
            .where(
                Content.id == content_uuid,
                Content.status == ContentStatus.published,
                Content.deleted_at.is_(None),
            )
            .with_for_update(read=True)
            .execution_options(populate_existing=True)
        ).first()
        if content is None:
            raise NotFound(f"{NOT_AVAILABLE}.")
        if live_purchase(db, customer.id, content.id) is not None:
            raise Conflict(f"{ALREADY_PURCHASED}.")
        # A price set before the rule existed: Stripe would refuse the session, so refuse it here.
        check_checkout_price(content.price_cents, content.currency or "usd")
        free = content.price_cents == 0
        # Check the configuration before writing anything: a missing key must not leave a pending row.
        gateway = None if free else container.stripe
        purchase = ContentPurchase(
            id=uuid.uuid4(),
            customer_id=customer.id,
            content_id=content.id,
            organization_id=content.organization_id,
            price_paid_cents=content.price_cents,
            currency=content.currency or "usd",
            status=PurchaseStatus.completed if free else PurchaseStatus.pending,
            purchased_at=datetime.now(UTC) if free else None,
            amount_received_cents=0 if free else None,
        )
        db.add(purchase)
        _commit_or_conflict(uow)
        facts: dict[str, Any] = dict(
            purchase_id=str(purchase.id),
            customer_id=str(customer.id),
            customer_email=customer.email,
            content_id=str(content.id),
            organization_id=str(content.organization_id),
            title=content.title,
            amount_cents=content.price_cents,
            currency=content.currency or "usd",
        )
    amount = Money(facts["amount_cents"], facts["currency"])
    shown = mask_email(facts["customer_email"])
    if free:
        return CheckoutResult(facts["purchase_id"], None, True, None, facts["title"], amount, shown)
    assert gateway is not None
    app_url = container.settings.app_url.rstrip("/")
    content_url = f"{app_url}/content/{facts['content_id']}"
    try:
        session = gateway.create_checkout_session(
            **facts,
            success_url=f"{content_url}?purchase=success",
            cancel_url=f"{content_url}?purchase=cancel",
            idempotency_key=f"checkout-{facts['purchase_id']}",
        )
    except BaseException:
        try:
            _abandon(container, uuid.UUID(facts["purchase_id"]))
        except Exception as exc:  # noqa: BLE001 - keep Stripe's error; reconcile reports the row
            log.warning("could not mark purchase %s failed: %s", facts["purchase_id"], type(exc).__name__)
        raise
    with container.uow() as uow:
        row = lock_purchase(uow.session, uuid.UUID(facts["purchase_id"]))
        if row is not None and row.stripe_checkout_session_id is None:
            row.stripe_checkout_session_id = session["id"]
        uow.commit()
    return CheckoutResult(
        facts["purchase_id"], session.get("url"), False, session["id"], facts["title"], amount, shown
    )


def _commit_or_conflict(uow: Any) -> None:
    try:
        uow.commit()
    except IntegrityError as exc:
        uow.rollback()
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
        if constraint == LIVE_INDEX:
            raise Conflict(f"{ALREADY_PURCHASED}.") from None
        raise


def _abandon(container: Container, purchase_id: uuid.UUID) -> None:
    """Stripe failed: the pending row becomes failed, so the customer can try again."""
    with container.uow() as uow:
        row = lock_purchase(uow.session, purchase_id)
        if (
            row is not None
            and row.status == PurchaseStatus.pending
            and row.stripe_checkout_session_id is None
        ):
            row.status = PurchaseStatus.failed
        uow.commit()


# --- in-transaction state changes (the caller commits) ---------------------------------------------
