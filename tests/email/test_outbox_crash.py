"""`codex webhook listen` killed with SIGKILL in a burst of purchases, at three points: before the
commit, after the commit before the receipt is sent, after Resend accepted it before we marked it.
After a restart, Stripe's redelivery and a drain, every completed purchase has exactly one receipt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select, text

from services.core import models as m
from tests import factories as f
from tests.conftest import CODEX_ENV
from tests.fixtures.email import RESEND_TEST_KEY
from tests.standins.stripe_server import sign_payload

pytestmark = pytest.mark.commits

SECRET = "whsec_test_outbox_crash_0123456789"
PURCHASES = 24


def _wait(condition: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


class Listener:
    """`codex webhook listen` as its own process, as an operator runs it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codex_cli", "webhook", "listen", "--port", "0", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line, log.read_text()[-2000:]
        self.url = json.loads(line)["listening"] + "/webhooks/stripe/payment"

    def post(self, body: bytes) -> int | None:
        headers = {"Stripe-Signature": sign_payload(body, SECRET), "Content-Type": "application/json"}
        try:
            return requests.post(self.url, data=body, headers=headers, timeout=60).status_code
        except requests.RequestException:
            return None  # killed while answering: Stripe would retry

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.log.close()

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(60)
        self.log.close()
        return code


@pytest.fixture
def shop(session) -> list[dict]:  # type: ignore[no-untyped-def]
    """PURCHASES pending purchases by distinct customers; their checkout sessions as Stripe sends them."""
    org = f.make_org(session)
    content = f.make_content(session, org, title="Deep Work", price_cents=1999)
    sessions = []
    for _ in range(PURCHASES):
        customer = f.make_user(session, email=f"buyer-{uuid.uuid4().hex[:8]}@example.com")
        purchase = f.make_purchase(
            session,
            customer,
            content,
            status=m.PurchaseStatus.pending,
            stripe_checkout_session_id=f"cs_test_{uuid.uuid4().hex}",
        )
        sessions.append(
            {
                "id": purchase.stripe_checkout_session_id,
                "object": "checkout.session",
                "mode": "payment",
                "status": "complete",
                "payment_status": "paid",
                "amount_total": 1999,
                "amount_subtotal": 1999,
                "currency": "usd",
                "customer_email": customer.email,
                "payment_intent": f"pi_test_{uuid.uuid4().hex[:20]}",
                "metadata": {
                    "purchaseId": str(purchase.id),
                    "customerId": str(customer.id),
                    "contentId": str(content.id),
                    "organizationId": str(org.id),
                },
            }
        )
    session.commit()
    return sessions


def _events(sessions: list[dict]) -> list[bytes]:
    return [
        json.dumps(
            {
                "id": f"evt_test_{uuid.uuid4().hex[:20]}",
                "object": "event",
                "type": "checkout.session.completed",
                "created": int(time.time()),
                "livemode": False,
                "data": {"object": s},
            }
        ).encode()
        for s in sessions
    ]


@pytest.mark.parametrize("point", ["before-commit", "after-commit-before-send", "after-send-before-mark"])
def test_listener_killed_mid_burst_sends_exactly_one_receipt_per_purchase(
    point, shop, settings, db_url, resend_server, cli, tmp_path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CODEX_ENV}
    env.update(
        DATABASE_URL=db_url,
        CODEX_HOME=str(settings.codex_home),
        STRIPE_WEBHOOK_SECRET_PAYMENT=SECRET,
        RESEND_API_KEY=RESEND_TEST_KEY,
        RESEND_API_URL=resend_server.url,
    )
    engine = create_engine(db_url)

    def completed() -> int:
        with engine.connect() as conn:
            return conn.scalar(
                select(func.count())
                .select_from(m.ContentPurchase)
                .where(m.ContentPurchase.status == m.PurchaseStatus.completed)
            )

    events = _events(shop)
    blocker = engine.connect()
    blocked = 0
    if point == "before-commit":
        # Some purchases are row-locked by us: their events stop inside the transaction. Fewer than
        # the listener's database threads (MAX_DB_THREADS), or the others would queue behind them.
        ids = [s["metadata"]["purchaseId"] for s in shop[8:12]]
        blocked = len(ids)
        blocker.begin()
        blocker.execute(
            text("SELECT id FROM content_purchases WHERE id = ANY(CAST(:ids AS uuid[])) FOR UPDATE"),
            {"ids": ids},
        )
    else:
        resend_server.hold("before" if point == "after-commit-before-send" else "after")

    listener = Listener(env, tmp_path / "listener.log")
    with ThreadPoolExecutor(PURCHASES) as pool:  # every event in flight at once, as in a burst
        burst = [pool.submit(listener.post, body) for body in events]
        if point == "before-commit":
            _wait(lambda: completed() == PURCHASES - blocked, "the unblocked purchases")
            with engine.connect() as conn:
                _wait(
                    lambda: (
                        conn.scalar(
                            text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                        )
                        >= 1
                    ),
                    "an event waiting on our lock",
                )
        else:
            _wait(lambda: completed() == PURCHASES and resend_server.held >= 1, "a receipt in flight")
        listener.kill()
        blocker.rollback()
        blocker.close()
        resend_server.release()
        answers = [b.result() for b in burst]
    assert answers.count(200) >= PURCHASES - blocked - 8  # the rest were cut off by the kill
    with engine.connect() as conn:
        pending = conn.scalar(text("SELECT count(*) FROM email_outbox WHERE status = 'pending'"))
    if point != "before-commit":
        assert pending >= 1  # committed, queued, not marked sent: the case the outbox exists for

    # Restart; Stripe redelivers every event it had no 2xx for (here: all of them, to be sure).
    restarted = Listener(env, tmp_path / "listener.log")
    assert all(restarted.post(body) == 200 for body in events)
    assert restarted.stop() == 0
    drained = cli.with_settings(resend_api_key=RESEND_TEST_KEY, resend_api_url=resend_server.url)(
        "email", "drain"
    )
    assert drained.exit_code == 0, drained.output

    assert completed() == PURCHASES
    receipts = [e["to"][0] for e in resend_server.emails]
    assert sorted(receipts) == sorted(s["customer_email"] for s in shop)  # one each, none twice
    with engine.connect() as conn:
        statuses = dict(conn.execute(text("SELECT status, count(*) FROM email_outbox GROUP BY status")).all())
    assert statuses == {"sent": PURCHASES}
    engine.dispose()
