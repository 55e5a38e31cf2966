"""Reconciliation of purchases against Stripe, for cron: few API calls, batch loads, one transaction per fix.

Stripe is read with list endpoints over the window (checkout sessions and refunds, 100 per page) and
matched to purchases in memory; a single retrieve is made only for a pending purchase whose session
is not in the listed window. Fixes go through the same purchase-service code the webhook uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from services.adapters.locks import LockHolder, run_lock
from services.core.audit import record_audit
from services.core.errors import ExternalServiceError
from services.core.models import ContentPurchase, PurchaseStatus
from services.payments import purchases

if TYPE_CHECKING:
    from services.bootstrap import Container

log = logging.getLogger(__name__)

LOCK_NAME = "codex-reconcile"
ACTOR = "codex reconcile"


@dataclass
class Finding:
    """One drift found: fixed (or, in a dry run, fixable) or needing a person."""

    kind: str
    purchase_id: str | None
    session_id: str | None = None
    detail: str = ""


@dataclass
class ReconcileReport:
    window_start: datetime
    cutoff: datetime
    dry_run: bool
    locked_out: bool = False
    lock_holder: LockHolder | None = None
    lock_stale: bool = False  # held past CODEX_LOCK_MAX_AGE: a person should look
    checked_purchases: int = 0
    listed_sessions: int = 0
    listed_refunds: int = 0
    retrieved_sessions: int = 0
    fixed: list[Finding] = field(default_factory=list)
    unresolved: list[Finding] = field(default_factory=list)
    emails_failed: int = 0

    @property
    def fixed_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for finding in self.fixed:
            counts[finding.kind] = counts.get(finding.kind, 0) + 1
        return counts

    @property
    def clean(self) -> bool:
        return not self.fixed and not self.unresolved

    @property
    def needs_attention(self) -> bool:
        return bool(self.unresolved) or self.lock_stale


@dataclass
class _Pending:
    id: Any
    session_id: str | None
    price_cents: int
    created_at: datetime


def reconcile_purchases(
    container: Container,
    since: timedelta,
    min_age: timedelta,
    dry_run: bool = False,
    limit: int | None = None,
    now: datetime | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> ReconcileReport:
    """Find and fix drift between purchases and Stripe; see the module docstring for the request budget."""
    now = now or datetime.now(UTC)
    report = ReconcileReport(window_start=now - since, cutoff=now - min_age, dry_run=dry_run)
    with run_lock(container.engine, LOCK_NAME, container.settings.lock_max_age()) as lock:
        if not lock.acquired:
            report.locked_out, report.lock_holder, report.lock_stale = True, lock.holder, lock.stale
            return report
        _run(container, report, limit, on_progress or (lambda _msg: None))
    return report


def _run(
    container: Container, report: ReconcileReport, limit: int | None, progress: Callable[[str], None]
) -> None:
    gateway = container.stripe
    pending = _load_pending(container, report.cutoff, limit)
    report.checked_purchases = len(pending)
    progress(f"{len(pending)} pending purchase(s) older than the minimum age")

    # Sessions created in the window, matched to purchases in memory.
    listed: dict[str, dict[str, Any]] = {}
    by_purchase: dict[str, dict[str, Any]] = {}
    stripe_session: dict[str, Any] | None
    for stripe_session in gateway.iter_checkout_sessions(created_gte=report.window_start):
        listed[stripe_session["id"]] = stripe_session
        purchase_id = (stripe_session.get("metadata") or {}).get("purchaseId")
        if purchase_id:
            by_purchase[str(purchase_id)] = stripe_session
    report.listed_sessions = len(listed)
    progress(f"{len(listed)} checkout session(s) listed from Stripe")

    for purchase in pending:
        # By the stored session id or, when saving that id failed after Stripe answered, by the
        # purchaseId the session carries in its metadata.
        stripe_session = listed.get(purchase.session_id or "") or (
            None if purchase.session_id else by_purchase.get(str(purchase.id))
        )
        if stripe_session is None:
            if not purchase.session_id:
                report.unresolved.append(
                    Finding(
                        "no_checkout_session",
                        str(purchase.id),
                        None,
                        "pending purchase has no Stripe checkout session",
                    )
                )
                continue
            stripe_session = _retrieve(gateway, purchase, report)
            if stripe_session is None:
                continue
        _reconcile_session(container, report, purchase, stripe_session)

    _paid_sessions_without_purchase(container, report, listed, {str(p.id) for p in pending})
    _refunds(container, report)


def _load_pending(container: Container, cutoff: datetime, limit: int | None) -> list[_Pending]:
    """Pending purchases old enough to act on, oldest first, in one query."""
    query = (
        select(
            ContentPurchase.id,
            ContentPurchase.stripe_checkout_session_id,
            ContentPurchase.price_paid_cents,
            ContentPurchase.created_at,
        )
        .where(ContentPurchase.status == PurchaseStatus.pending, ContentPurchase.created_at <= cutoff)
        .order_by(ContentPurchase.created_at)
    )
    if limit:
        query = query.limit(limit)
    with container.uow() as uow:
        return [_Pending(*row) for row in uow.session.execute(query).all()]


def _retrieve(gateway: Any, purchase: _Pending, report: ReconcileReport) -> dict[str, Any] | None:
    """The one retrieve we allow: a session created before the listed window."""
    report.retrieved_sessions += 1
    try:
        return gateway.retrieve_checkout_session(purchase.session_id)
    except ExternalServiceError as exc:
        # Stripe answers 404 / resource_missing for a session it does not know; anything else
        # (429 or 5xx after every retry, a bad key) stops the run with exit 1.
        if getattr(exc, "http_status", None) == 404 or getattr(exc, "code", None) == "resource_missing":
            report.unresolved.append(
                Finding(
                    "session_unknown_to_stripe",
                    str(purchase.id),
                    purchase.session_id,
                    "Stripe does not know this checkout session",
                )
            )
            return None
        raise


def _reconcile_session(
    container: Container, report: ReconcileReport, purchase: _Pending, stripe_session: dict[str, Any]
) -> None:
    outcome = session_outcome(stripe_session)
    if outcome == "completed":
        _fix(container, report, purchase, stripe_session, "completed", purchases.complete_purchase)
    elif outcome == "failed":
        _fix(container, report, purchase, stripe_session, "failed", purchases.fail_purchase)


def session_outcome(stripe_session: dict[str, Any]) -> str | None:
    """What a pending purchase becomes given its Checkout Session: paid (or free) completes it, an
    expired session fails it, anything else (still open, unpaid) leaves it pending."""
    if stripe_session.get("payment_status") in ("paid", "no_payment_required"):
        return "completed"
    if stripe_session.get("status") == "expired":
        return "failed"
    return None


def _fix(
    container: Container,
    report: ReconcileReport,
    purchase: _Pending,
    stripe_session: dict[str, Any],
    kind: str,
    apply: Callable[[Any, dict[str, Any]], Any],
) -> None:
    finding = Finding(kind, str(purchase.id), stripe_session.get("id"))
    if report.dry_run:
        amount = stripe_session.get("amount_total")
        if kind == "completed" and amount is not None and amount != purchase.price_cents:
            report.unresolved.append(
                Finding(
                    "amount_mismatch",
                    str(purchase.id),
                    stripe_session.get("id"),
                    f"paid {amount} cents, price {purchase.price_cents} cents",
                )
            )
        report.fixed.append(finding)
        return
    with container.uow() as uow:
        outcome = apply(uow.session, stripe_session)
        changed = outcome.action in ("completed", "failed", "refunded_before_completion")
        if changed:
            record_audit(
                uow.session,
                ACTOR,
                f"reconcile.{kind}",
                "purchase",
                purchase.id,
                {"session_id": stripe_session.get("id")},
            )
        queued = (
            purchases.queue_receipt(uow.session, container.settings.app_url, outcome) if changed else None
        )
        uow.commit()
    if not changed:
        return
    report.fixed.append(finding)
    if getattr(outcome, "amount_mismatch", False):
        report.unresolved.append(
            Finding(
                "amount_mismatch",
                str(purchase.id),
                stripe_session.get("id"),
                f"paid {outcome.received_cents} cents, price {outcome.expected_cents} cents",
            )
        )
    if kind == "completed":
        from services.email.outbox import deliver_now

        delivery = deliver_now(container, queued)
        if delivery is not None and delivery.status != "sent":
            report.emails_failed += 1


def _paid_sessions_without_purchase(
    container: Container, report: ReconcileReport, listed: dict[str, dict[str, Any]], pending_ids: set[str]
) -> None:
    """Paid sessions whose purchaseId the database does not know: money taken, nothing granted."""
    paid = {
        s["id"]: (s.get("metadata") or {}).get("purchaseId")
        for s in listed.values()
        if s.get("payment_status") == "paid"
    }
    candidates = {sid: pid for sid, pid in paid.items() if pid not in pending_ids}
    if not candidates:
        return
    import uuid

    valid: dict[str, uuid.UUID] = {}
    for sid, pid in candidates.items():
        try:
            valid[sid] = uuid.UUID(str(pid))
        except ValueError:
            report.unresolved.append(
                Finding("paid_session_unknown_purchase", pid, sid, "paid session without a valid purchaseId")
            )
    with container.uow() as uow:
        known = set(
            uow.session.scalars(
                select(ContentPurchase.id).where(ContentPurchase.id.in_(list(valid.values())))
            )
        )
    for sid, pid in valid.items():
        if pid not in known:
            report.unresolved.append(
                Finding(
                    "paid_session_unknown_purchase",
                    str(pid),
                    sid,
                    "paid session whose purchaseId is not in the database",
                )
            )


def _refunds(container: Container, report: ReconcileReport) -> None:
    """Completed purchases refunded in Stripe (e.g. from the dashboard) but not here, and refunds
    recorded without their id (a `charge.refunded` event names none). Every refund of a payment intent
    counts: two partial refunds that add up to the price are a full refund."""
    refunds = [
        r
        for r in container.stripe.iter_refunds(created_gte=report.window_start)
        if r.get("status") in ("succeeded", "pending") and r.get("payment_intent")
    ]
    report.listed_refunds = len(refunds)
    if not refunds:
        return
    by_intent: dict[str, list[dict[str, Any]]] = {}
    for refund in reversed(refunds):  # Stripe lists newest first; oldest first here
        by_intent.setdefault(str(refund["payment_intent"]), []).append(refund)
    with container.uow() as uow:
        rows = uow.session.execute(
            select(
                ContentPurchase.id,
                ContentPurchase.stripe_payment_intent_id,
                ContentPurchase.price_paid_cents,
                ContentPurchase.amount_received_cents,
                ContentPurchase.refunded_at,
            ).where(
                ContentPurchase.stripe_payment_intent_id.in_(list(by_intent)),
                ContentPurchase.status == PurchaseStatus.completed,
                or_(ContentPurchase.refunded_at.is_(None), ContentPurchase.stripe_refund_id.is_(None)),
            )
        ).all()
    for purchase_id, intent, price, received, refunded_at in rows:
        listed = by_intent[str(intent)]
        latest = listed[-1]
        if report.dry_run:
            paid = received if received is not None else price
            total = sum(int(r.get("amount") or 0) for r in listed)
            if refunded_at is not None:
                report.fixed.append(
                    Finding("refund_id_recorded", str(purchase_id), None, f"refund {latest['id']}")
                )
            elif total >= paid:
                report.fixed.append(
                    Finding("refund_recorded", str(purchase_id), None, f"refund {latest['id']}")
                )
            else:
                report.unresolved.append(
                    Finding("partial_refund", str(purchase_id), None, f"{total} of {paid} cents refunded")
                )
            continue
        with container.uow() as uow:
            outcome = None
            for refund in listed:  # each is remembered; the last outcome has the total
                outcome = purchases.record_external_refund(uow.session, refund)
                if outcome.action in ("refund_recorded", "refund_id_recorded"):
                    break
            assert outcome is not None
            kind = outcome.action
            if kind == "partial_refund":
                report.unresolved.append(Finding("partial_refund", str(purchase_id), None, outcome.detail))
            changed = kind in ("refund_recorded", "refund_id_recorded")
            if changed:
                record_audit(
                    uow.session,
                    ACTOR,
                    f"reconcile.{kind}",
                    "purchase",
                    purchase_id,
                    {"refund_id": latest["id"], "refunds": [r["id"] for r in listed]},
                )
            uow.commit()
        if changed:
            report.fixed.append(Finding(kind, str(purchase_id), None, f"refund {latest['id']}"))
