"""Two listener processes on one database (as behind a load balancer) apply every event exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from services.core.models import ContentPurchase, PurchaseStatus, StripeEvent, StripeEventStatus
from tests.factories import make_content, make_org, make_purchase, make_user
from tests.webhook.conftest import WebhookClient, make_event
from tests.webhook.test_cli import _env


def checkout_event(purchase: ContentPurchase, email: str) -> dict:
    session = {
        "id": purchase.stripe_checkout_session_id,
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": purchase.price_paid_cents,
        "amount_subtotal": purchase.price_paid_cents,
        "currency": "usd",
        "customer_email": email,
        "customer_details": {"email": email, "name": None},
        "payment_intent": f"pi_test_{uuid.uuid4().hex[:20]}",
        "metadata": {
            "purchaseId": str(purchase.id),
            "customerId": str(purchase.customer_id),
            "contentId": str(purchase.content_id),
            "organizationId": str(purchase.organization_id),
        },
    }
    return make_event("checkout.session.completed", session)


@pytest.mark.commits
def test_two_listeners_receiving_the_same_events_at_once_apply_each_exactly_once(
    settings, session, container, tmp_path
) -> None:
    content = make_content(session, make_org(session), price_cents=999)
    events = []
    for i in range(20):
        buyer = make_user(session, email=f"buyer{i}-{uuid.uuid4().hex[:6]}@example.com")
        purchase = make_purchase(
            session,
            buyer,
            content,
            status=PurchaseStatus.pending,
            stripe_checkout_session_id=f"cs_test_{uuid.uuid4().hex}",
        )
        events.append(checkout_event(purchase, buyer.email))
    session.commit()

    procs = []
    try:
        for n in range(2):
            log = (tmp_path / f"listener-{n}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "codex_cli", "webhook", "listen", "--port", "0", "--json"],
                    cwd=tmp_path,
                    env=_env(settings),
                    stdout=subprocess.PIPE,
                    stderr=log,
                )
            )
        clients = [WebhookClient(json.loads(p.stdout.readline())["listening"]) for p in procs]
        assert clients[0].url != clients[1].url

        deliveries = [(client, event) for event in events for client in clients]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda d: (d[1]["id"], d[0].post(d[1])), deliveries))
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=30) for proc in procs] == [0, 0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert {response.status_code for _, response in answers} == {200}
    outcomes: dict[str, list[str]] = {}
    for event_id, response in answers:
        outcomes.setdefault(event_id, []).append(response.json()["outcome"])
    assert all(sorted(o) == ["duplicate", "processed"] for o in outcomes.values()), outcomes

    with container.uow() as uow:
        purchases = uow.session.scalars(select(ContentPurchase)).all()
        rows = uow.session.scalars(select(StripeEvent)).all()
        assert [p.status for p in purchases] == [PurchaseStatus.completed] * len(events)
        assert len(rows) == len(events)
        assert {(r.status, r.attempts) for r in rows} == {(StripeEventStatus.processed, 1)}
