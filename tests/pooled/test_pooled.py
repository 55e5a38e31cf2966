"""Through PgBouncer in transaction mode: the listener, the cron locks and refunds stay correct.

Before this, behind Neon's pooler the listener answered 500 to some deliveries (psycopg's prepared
statements met other server connections) and a session advisory lock leaked onto a pooled
connection, so every later `codex reconcile` said "in progress" and exited 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from services.adapters.locks import run_lock
from services.core.models import ContentPurchase, EmailOutbox, PurchaseStatus, StripeEvent
from tests.fixtures.stripe import STRIPE_WEBHOOK_SECRET, sign_payload
from tests.pooled.conftest import codex, codex_env
from tests.webhook.test_effects import pending_purchase

pytestmark = pytest.mark.commits

EVENTS = 240


def _post(url: str, event: dict) -> int:
    body = json.dumps(event).encode()
    signature = sign_payload(body, STRIPE_WEBHOOK_SECRET)
    headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
    return requests.post(url + "/webhooks/stripe/payment", data=body, headers=headers, timeout=60).status_code


def test_a_burst_of_deliveries_with_duplicates_completes_each_purchase_once(
    session, stripe_standin, stripe_container, listener_process
) -> None:
    events, ids = [], []
    for _ in range(EVENTS):
        purchase_id, checkout, _email = pending_purchase(session, stripe_standin)
        stripe_standin.mark_paid(checkout["id"], emit_event=False)
        events.append(stripe_standin.event_for_session("checkout.session.completed", checkout["id"]))
        ids.append(purchase_id)
    deliveries = events + events[: EVENTS // 4]  # Stripe retries: a quarter arrive twice
    listener = listener_process("--workers", "2")

    with ThreadPoolExecutor(max_workers=24) as pool:
        statuses = list(pool.map(lambda e: _post(listener.url, e), deliveries))
    code, stderr = listener.stop()

    assert [s for s in statuses if s != 200] == [], stderr[-2000:]
    assert code == 0
    session.expire_all()
    completed = session.scalar(
        select(func.count()).where(
            ContentPurchase.id.in_(ids), ContentPurchase.status == PurchaseStatus.completed
        )
    )
    assert completed == EVENTS
    assert session.scalar(select(func.count()).select_from(StripeEvent)) == EVENTS
    # One receipt queued per purchase, none for the duplicates; the listener's drainer may still have
    # some in hand when it is stopped, and `codex email drain` (cron) sends the rest, once.
    queued = session.scalars(select(EmailOutbox.idempotency_key)).all()
    assert sorted(queued) == sorted(f"purchase-receipt-{purchase_id}" for purchase_id in ids)
    drained = codex(stripe_container.settings, "email", "drain")
    assert drained.returncode == 0, drained.stderr
    receipts = list((stripe_container.settings.codex_home / "outbox").glob("*.eml"))
    assert len(receipts) == EVENTS


def _slow_reconcile(stripe_standin) -> None:  # type: ignore[no-untyped-def]
    stripe_standin.slow(2.0, method="GET", path="/v1/checkout/sessions")


def test_two_reconciles_at_once_one_works_one_says_in_progress_and_the_lock_is_free_after(
    session, stripe_standin, stripe_settings
) -> None:
    purchase_id, checkout, _ = pending_purchase(session, stripe_standin)
    session.execute(
        ContentPurchase.__table__.update()
        .where(ContentPurchase.id == purchase_id)
        .values(created_at=func.now() - timedelta(hours=1))
    )
    session.commit()
    stripe_standin.mark_paid(checkout["id"], emit_event=False)
    _slow_reconcile(stripe_standin)
    env = codex_env(stripe_settings)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "codex_cli", "reconcile", "--verbose"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [(run.wait(timeout=120), *run.communicate()) for run in runs]

    assert [code for code, _out, _err in outputs] == [0, 0], outputs
    in_progress = [out for _code, out, _err in outputs if "Another reconcile run is in progress" in out]
    assert len(in_progress) == 1, outputs
    assert "(pid " in in_progress[0] and " since " in in_progress[0]
    session.expire_all()
    assert session.get(ContentPurchase, purchase_id).status == PurchaseStatus.completed

    again = codex(stripe_settings, "reconcile", "--json")  # the lock is free right after
    assert again.returncode == 0 and json.loads(again.stdout)["locked_out"] is False


HOLDER = """
import sys, time
from datetime import timedelta
from services.adapters.db import make_engine
from services.adapters.locks import run_lock
engine = make_engine(sys.argv[1])
with run_lock(engine, sys.argv[2], timedelta(hours=1)) as lock:
    print("acquired" if lock.acquired else "refused", flush=True)
    time.sleep(600)
"""


def _hold_in_another_process(url: str, name: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, name], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "acquired"
    return holder


def _until(check, seconds: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


@pytest.mark.parametrize("command", [("reconcile",), ("cleanup", "orphans", "--yes", "--older-than", "1h")])
def test_a_run_killed_with_sigkill_does_not_block_the_next(stripe_settings, command) -> None:
    name = "codex-reconcile" if command[0] == "reconcile" else "codex-cleanup"
    holder = _hold_in_another_process(stripe_settings.database_url, name)
    try:
        blocked = codex(stripe_settings, *command)
        assert blocked.returncode == 0, blocked.stderr
        assert f"in progress (pid {holder.pid} on " in blocked.stdout
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    def proceeds() -> bool:
        return "in progress" not in codex(stripe_settings, *command).stdout

    assert _until(proceeds), "the lock stayed after its holder was killed"


def test_a_lock_held_past_the_limit_is_exit_4_naming_the_holder(stripe_settings) -> None:
    holder = _hold_in_another_process(stripe_settings.database_url, "codex-reconcile")
    try:
        time.sleep(1.2)
        stale = codex(stripe_settings, "reconcile", CODEX_LOCK_MAX_AGE="1s")
        young = codex(stripe_settings, "reconcile", CODEX_LOCK_MAX_AGE="1h")
    finally:
        holder.kill()
        holder.wait()
    assert stale.returncode == 4, stale.stdout + stale.stderr
    assert f"held by pid {holder.pid} on " in stale.stderr and "CODEX_LOCK_MAX_AGE" in stale.stderr
    assert "Traceback" not in stale.stderr
    assert young.returncode == 0 and "in progress" in young.stdout


def test_the_lock_is_released_when_the_run_fails(container) -> None:
    engine = container.engine
    with pytest.raises(RuntimeError), run_lock(engine, "codex-test-lock", timedelta(hours=1)) as lock:
        assert lock.acquired
        raise RuntimeError("the run failed")
    with run_lock(engine, "codex-test-lock", timedelta(hours=1)) as again:
        assert again.acquired


def test_exclusion_holds_across_many_pooled_transactions(container, db_url) -> None:
    """While one run holds the lock, other clients' transactions (on any server connection) are refused."""
    from services.adapters.db import make_engine

    other = make_engine(db_url)
    refused = []
    try:
        with run_lock(container.engine, "codex-test-lock", timedelta(hours=1)) as lock:
            assert lock.acquired
            for _ in range(20):
                with run_lock(other, "codex-test-lock", timedelta(hours=1)) as second:
                    refused.append(not second.acquired and second.holder is not None)
    finally:
        other.dispose()
    assert all(refused) and len(refused) == 20


def test_db_commands_use_the_unpooled_url_when_set(cli, pg, db_name) -> None:
    direct = pg.sqlalchemy_url(db_name)
    status = cli.with_settings(database_url_unpooled=direct)("db", "status", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["up_to_date"] is True
    broken = cli.with_settings(database_url_unpooled=direct.replace(db_name, "no_such_db"))("db", "status")
    assert broken.exit_code != 0 and "no_such_db" in broken.output  # it really went to that URL


def test_prepared_statements_through_the_pooler_would_fail(db_url) -> None:
    """Why the engine turns prepared statements off: with them on, a few clients sharing the pooler's
    server connections soon meet a statement prepared on another connection (or miss their own)."""
    import psycopg

    url = db_url.replace("postgresql+psycopg://", "postgresql://")
    conns = [psycopg.connect(url, prepare_threshold=0, autocommit=True) for _ in range(3)]
    failures = 0
    try:
        for _ in range(10):
            for conn in conns:
                try:
                    conn.execute("SELECT %s::int + 1", (uuid.uuid4().int % 100,))
                except psycopg.Error:
                    failures += 1
    finally:
        for conn in conns:
            conn.close()
    assert failures > 0
