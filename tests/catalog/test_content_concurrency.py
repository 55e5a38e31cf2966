"""Two operators at once: the unique slug index and the content row lock decide, never a crash.

Each test holds a transaction open in the `session` fixture, starts the service call in a thread, waits
until PostgreSQL reports that thread's statement waiting on a lock, then commits and checks the outcome.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, text

from services.catalog import content as svc
from services.core import models as m
from services.core.errors import Conflict, NotFound
from tests import factories as f

# Real commits (two operators on two connections): a cloned database per test.
pytestmark = pytest.mark.commits

OWNER = "owner@example.com"
WAIT_LIMIT_S = 60  # a safety net against a hang, not a timing assertion


class Background:
    """A service call in a thread; .join() returns its value or raises its exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.value = fn()
            except BaseException as exc:  # noqa: BLE001 - handed back to the test
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> Any:
        self.thread.join(WAIT_LIMIT_S)
        assert not self.thread.is_alive(), "the service call never finished"
        if self.error is not None:
            raise self.error
        return self.value


def _wait_for_lock_waiter(container: Any, call: Background) -> None:
    """Block until some backend of this database waits on a lock (the background call's statement)."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    with container.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting:
                return
            if not call.thread.is_alive():
                call.join()  # raises what it raised
                pytest.fail("the call finished without waiting for the lock")
            conn.rollback()
            time.sleep(0.02)
    pytest.fail("the call never waited for the lock")


@pytest.fixture
def world(session, container):  # type: ignore[no-untyped-def]
    f.make_owner(session, email=OWNER)
    org = f.make_org(session, slug="studio")
    media = f.make_media(session, org)
    session.commit()
    return {"org": org, "media": media}


def _create(container: Any, world: dict[str, Any], title: str) -> svc.ContentView:
    return svc.create_content(
        container, "studio", str(world["media"].id), title, "A long enough description.", 500, by=OWNER
    )


def test_two_creates_of_one_slug_at_once_give_one_row_and_a_conflict(session, container, world) -> None:
    # The other operator's insert is flushed but not committed: the service's pre-check cannot see it,
    # so only the unique index stops the second row.
    f.make_content(session, world["org"], media=world["media"], slug="race-day", title="Race Day")
    call = Background(lambda: _create(container, world, "Race Day!"))
    _wait_for_lock_waiter(container, call)
    session.commit()
    with pytest.raises(Conflict, match="Slug 'race-day' already exists in organization studio"):
        call.join()
    session.expire_all()
    slugs = session.scalars(select(m.Content.slug).where(m.Content.deleted_at.is_(None))).all()
    assert slugs == ["race-day"]
    assert session.scalars(select(m.AuditLog.action)).all() == []  # the loser left no audit row


def test_a_slug_change_racing_a_create_is_a_conflict(session, container, world) -> None:
    mine = _create(container, world, "First title")
    f.make_content(session, world["org"], media=world["media"], slug="wanted", title="Wanted")
    call = Background(lambda: svc.update_content(container, "studio", mine.id, slug="wanted", by=OWNER))
    _wait_for_lock_waiter(container, call)
    session.commit()
    with pytest.raises(Conflict, match="Slug 'wanted' already exists"):
        call.join()
    session.expire_all()
    assert session.get(m.Content, uuid.UUID(mine.id)).slug == "first-title"


def test_a_publish_waiting_on_a_delete_finds_the_content_gone(session, container, world) -> None:
    content = f.make_content(session, world["org"], media=world["media"], status=m.ContentStatus.draft)
    session.commit()
    locked = session.scalars(select(m.Content).where(m.Content.id == content.id).with_for_update()).one()
    call = Background(lambda: svc.publish_content(container, "studio", str(content.id), by=OWNER))
    _wait_for_lock_waiter(container, call)
    locked.deleted_at = func.now()
    session.commit()
    with pytest.raises(NotFound, match="Content not found"):
        call.join()
    session.expire_all()
    assert session.get(m.Content, content.id).status == m.ContentStatus.draft


def test_a_delete_waiting_on_a_grant_sees_the_new_purchase(session, container, world) -> None:
    # `codex access grant` locks the content row and inserts a completed purchase in one transaction.
    content = f.make_content(session, world["org"], media=world["media"])
    session.commit()
    session.scalars(select(m.Content).where(m.Content.id == content.id).with_for_update()).one()
    f.make_purchase(session, f.make_user(session), content, price_paid_cents=0)
    call = Background(lambda: svc.delete_content(container, "studio", str(content.id), by=OWNER))
    _wait_for_lock_waiter(container, call)
    session.commit()
    with pytest.raises(Conflict, match="Cannot delete content with completed purchases: .* has 1"):
        call.join()
    session.expire_all()
    assert session.get(m.Content, content.id).deleted_at is None
