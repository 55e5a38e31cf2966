"""`codex checkout create` racing `codex content delete` on the same content: exactly one wins.

Real concurrency on the real PostgreSQL (cloned database, real commits). The test lines the two up at
the worst moment: another transaction holds an uncommitted pending purchase of the same customer and
content, so the checkout's insert waits on the live-purchase unique index after it has read the
content; meanwhile the delete runs. Without a lock on the content row the delete sees neither
purchase and soft-deletes while the checkout then commits and gets a live Checkout URL.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select, text

from services.catalog import content as catalog
from services.core import models as m
from services.core.errors import Conflict, NotFound
from services.payments.checkout import create_checkout
from tests import factories as f
from tests.catalog.test_content_concurrency import WAIT_LIMIT_S, Background

pytestmark = pytest.mark.commits

OWNER = "owner@example.com"


def _wait_until(container: Any, waiters: int, done: Background) -> None:
    """Until `waiters` backends of this database wait on a lock, or `done` has finished."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    with container.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting >= waiters or not done.thread.is_alive():
                return
            conn.rollback()
            time.sleep(0.02)
    pytest.fail("the calls never lined up")


def _outcome(call: Background) -> str:
    try:
        call.join()
    except (Conflict, NotFound) as exc:
        return type(exc).__name__
    return "ok"


def test_checkout_and_delete_of_the_same_content_never_both_succeed(
    session, stripe_container, stripe_standin
) -> None:  # type: ignore[no-untyped-def]
    f.make_owner(session, email=OWNER)
    org = f.make_org(session, slug="studio")
    customer = f.make_user(session, email="jane@example.com")
    content = f.make_content(session, org, title="Last Call", price_cents=999)
    session.commit()
    # The blocker: an uncommitted live purchase of the same customer and content.
    blocker = f.make_purchase(session, customer, content, status=m.PurchaseStatus.pending)
    assert blocker is not None

    checkout = Background(lambda: create_checkout(stripe_container, "jane@example.com", str(content.id)))
    _wait_until(stripe_container, 1, checkout)
    delete = Background(lambda: catalog.delete_content(stripe_container, "studio", str(content.id), by=OWNER))
    _wait_until(stripe_container, 2, delete)
    session.rollback()  # the blocker goes away: the checkout's insert goes ahead

    outcomes = sorted([_outcome(checkout), _outcome(delete)])

    session.expire_all()
    row = session.get(m.Content, content.id)
    live = session.scalars(
        select(m.ContentPurchase).where(m.ContentPurchase.status == m.PurchaseStatus.pending)
    ).all()
    assert outcomes in (["Conflict", "ok"], ["NotFound", "ok"]), outcomes
    if row.deleted_at is not None:  # the delete won: no checkout session, no pending purchase
        assert stripe_standin.sessions == [] and live == []
    else:  # the checkout won: one session, and the content is still there
        assert len(stripe_standin.sessions) == 1 and len(live) == 1


def test_a_checkout_waiting_on_a_delete_finds_the_content_gone(
    session, stripe_container, stripe_standin
) -> None:  # type: ignore[no-untyped-def]
    org = f.make_org(session, slug="studio")
    f.make_user(session, email="jane@example.com")
    content = f.make_content(session, org, title="Last Call", price_cents=999)
    session.commit()
    locked = session.scalars(select(m.Content).where(m.Content.id == content.id).with_for_update()).one()
    checkout = Background(lambda: create_checkout(stripe_container, "jane@example.com", str(content.id)))
    _wait_until(stripe_container, 1, checkout)
    locked.deleted_at = locked.updated_at
    session.commit()

    assert _outcome(checkout) == "NotFound"
    assert stripe_standin.sessions == []
    assert session.scalars(select(m.ContentPurchase)).all() == []
