"""The access service a web app shares: access, library, playback progress, against real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from services.access import entitlements as access
from services.core.errors import NotFound, ValidationError
from services.core.models import PurchaseStatus, VideoPlayback
from tests.factories import make_category, make_content, make_media, make_org, make_purchase, make_user

# Real commits (its fixtures open connections of their own): a cloned database per test.
pytestmark = pytest.mark.commits


@pytest.fixture
def shop(session):  # type: ignore[no-untyped-def]
    org = make_org(session)
    return org, make_user(session), make_content(session, org)


def test_completed_purchase_grants_access(session, shop) -> None:
    org, customer, content = shop
    make_purchase(session, customer, content)
    assert access.has_access(session, customer.id, content.id) is True


def test_no_purchase_means_no_access(session, shop) -> None:
    org, customer, content = shop
    other = make_user(session)
    make_purchase(session, other, content)
    assert access.has_access(session, customer.id, content.id) is False
    assert access.has_access(session, customer.id, uuid.uuid4()) is False


@pytest.mark.parametrize("status", [PurchaseStatus.pending, PurchaseStatus.failed])
def test_pending_or_failed_purchase_gives_no_access(session, shop, status) -> None:
    org, customer, content = shop
    make_purchase(session, customer, content, status=status)
    assert access.has_access(session, customer.id, content.id) is False


def test_refunded_purchase_gives_no_access_and_a_new_purchase_restores_it(session, shop) -> None:
    org, customer, content = shop
    make_purchase(session, customer, content, refunded_at=datetime.now(UTC), refund_reason="asked")
    assert access.has_access(session, customer.id, content.id) is False
    make_purchase(session, customer, content)  # the partial unique index lets a refunded customer buy again
    assert access.has_access(session, customer.id, content.id) is True


def _statements_of(session, call):  # type: ignore[no-untyped-def]
    """Run `call` and return the (SQL, parameters) it sent to PostgreSQL."""
    from sqlalchemy import event

    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, *args) -> None:  # type: ignore[no-untyped-def]
        seen.append((statement, parameters))

    event.listen(session.bind, "before_cursor_execute", record)
    try:
        result = call()
    finally:
        event.remove(session.bind, "before_cursor_execute", record)
    return result, seen


def test_access_check_uses_the_partial_access_index(session, shop) -> None:
    org, customer, content = shop
    make_purchase(session, customer, content)
    granted, seen = _statements_of(session, lambda: access.has_access(session, customer.id, content.id))
    assert granted is True and len(seen) == 1
    statement, parameters = seen[0]
    session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = session.connection().exec_driver_sql("EXPLAIN " + statement, parameters).scalars().all()
    assert "ix_content_purchases_access" in "\n".join(plan)


def test_library_lists_purchases_newest_first_and_leaves_out_refunded_and_unpaid(session) -> None:
    org = make_org(session)
    customer = make_user(session)
    category = make_category(session, slug="courses")
    old = make_content(session, org, title="Old", category_id=category.id)
    new = make_content(session, org, title="New")
    refunded = make_content(session, org, title="Refunded")
    pending = make_content(session, org, title="Pending")
    someone_elses = make_content(session, org, title="Not theirs")
    make_purchase(session, customer, old, purchased_at=datetime(2024, 1, 1, tzinfo=UTC))
    make_purchase(session, customer, new, purchased_at=datetime(2024, 1, 2, tzinfo=UTC))
    make_purchase(session, customer, refunded, refunded_at=datetime.now(UTC))
    make_purchase(session, customer, pending, status=PurchaseStatus.pending)
    make_purchase(session, make_user(session), someone_elses)

    library = access.user_library(session, customer.id)

    assert [item.title for item in library] == ["New", "Old"]
    assert library[1].category_slug == "courses" and library[0].category_slug is None
    assert library[0].price_paid_cents == new.price_cents and library[0].media_item_id == new.media_item_id
    assert access.user_library(session, make_user(session).id) == []


def test_library_is_one_query(session, shop) -> None:
    org, customer, content = shop
    for _ in range(3):
        make_purchase(session, customer, make_content(session, org))
    library, seen = _statements_of(session, lambda: access.user_library(session, customer.id))
    assert len(library) == 3 and len(seen) == 1


def test_library_shows_where_the_customer_stopped(session, shop) -> None:
    org, customer, content = shop
    make_purchase(session, customer, content)
    access.save_playback_progress(session, customer.id, content.media_item_id, 42, 600)
    (item,) = access.user_library(session, customer.id)
    assert item.position_seconds == 42 and item.completed is False


def test_playback_progress_is_saved_then_updated_in_place(session, shop) -> None:
    org, customer, content = shop
    media_id = content.media_item_id
    assert access.get_playback_progress(session, customer.id, media_id).position_seconds == 0

    access.save_playback_progress(session, customer.id, media_id, 120, 300)
    first = access.get_playback_progress(session, customer.id, media_id)
    access.save_playback_progress(session, customer.id, media_id, 180.7, 301)
    second = access.get_playback_progress(session, customer.id, media_id)

    assert first.position_seconds == 120
    assert (second.position_seconds, second.duration_seconds) == (180, 301)
    assert second.last_watched_at >= first.last_watched_at
    rows = session.scalars(select(VideoPlayback).where(VideoPlayback.user_id == customer.id)).all()
    assert len(rows) == 1


@pytest.mark.parametrize(
    ("position", "duration", "completed"),
    [
        (290, 300, True),
        (285, 300, False),
        (285.5, 300, True),
        (300, 300, True),
        (0, 0, False),
        (10, 0, False),
    ],
)
def test_more_than_95_percent_watched_counts_as_completed(
    session, shop, position, duration, completed
) -> None:
    org, customer, content = shop
    saved = access.save_playback_progress(session, customer.id, content.media_item_id, position, duration)
    stored = access.get_playback_progress(session, customer.id, content.media_item_id)
    assert saved.completed is completed and stored.completed is completed


def test_rewatching_from_the_start_clears_completed(session, shop) -> None:
    org, customer, content = shop
    access.save_playback_progress(session, customer.id, content.media_item_id, 299, 300)
    access.save_playback_progress(session, customer.id, content.media_item_id, 5, 300)
    assert access.get_playback_progress(session, customer.id, content.media_item_id).completed is False


def test_negative_positions_are_refused(session, shop) -> None:
    org, customer, content = shop
    with pytest.raises(ValidationError):
        access.save_playback_progress(session, customer.id, content.media_item_id, -1, 300)


def test_progress_for_an_unknown_media_item_is_not_found_and_leaves_the_session_usable(session, shop) -> None:
    org, customer, content = shop
    with pytest.raises(NotFound):
        access.save_playback_progress(session, customer.id, uuid.uuid4(), 10, 300)
    media = make_media(session, org)
    assert access.save_playback_progress(session, customer.id, media.id, 10, 300).position_seconds == 10


def test_purchase_timestamps_order_the_library_even_when_created_out_of_order(session, shop) -> None:
    org, customer, content = shop
    later = make_content(session, org, title="Bought later")
    make_purchase(session, customer, later, purchased_at=datetime.now(UTC))
    make_purchase(session, customer, content, purchased_at=datetime.now(UTC) - timedelta(days=3))
    assert [i.title for i in access.user_library(session, customer.id)][0] == "Bought later"
