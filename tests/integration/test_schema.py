"""The schema enforces the platform's rules itself: every table, enum, constraint and delete rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, text
from sqlalchemy.exc import IntegrityError

from services.core import models as m
from tests import factories as f

# Real commits (constraints are checked on connections of their own): a cloned database per test.
pytestmark = pytest.mark.commits

TABLES = {
    "users",
    "sessions",
    "verification_tokens",
    "organizations",
    "organization_members",
    "organization_invitations",
    "categories",
    "tags",
    "media_items",
    "content",
    "content_tags",
    "content_resources",
    "resources",
    "content_purchases",
    "video_playback",
    "platform_settings",
    "email_templates",
    "stripe_events",
    "stripe_refunds",
    "audit_log",
    "email_outbox",
    "media_jobs",
}
ENUMS = {
    "user_role": ["customer", "platform_owner"],
    "org_member_role": ["owner", "admin", "creator", "member"],
    "media_type": ["video", "audio"],
    "media_status": ["uploaded", "transcoding", "ready", "failed"],
    "content_status": ["draft", "published", "archived"],
    "purchase_status": ["pending", "completed", "failed"],
    "email_outbox_status": ["pending", "sent", "dead"],
}


def _fails(session, fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IntegrityError), session.begin_nested():
        fn()


def test_every_table_and_enum_exists(session) -> None:
    tables = set(
        session.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        ).scalars()
    )
    assert tables >= TABLES
    for name, labels in ENUMS.items():
        found = session.execute(
            text(
                "SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e "
                "JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = :n"
            ),
            {"n": name},
        ).scalar()
        assert found == labels, name


def test_every_foreign_key_has_an_explicit_delete_rule_and_an_index(session) -> None:
    rows = session.execute(
        text("""
        SELECT c.conrelid::regclass::text AS tbl, a.attname AS col, c.confdeltype
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'f'
    """)
    ).all()
    assert len(rows) > 20
    for tbl, col, rule in rows:
        assert rule in ("c", "r", "n"), f"{tbl}.{col} has no explicit ON DELETE"
        leading = session.execute(
            text("""
            SELECT count(*) FROM pg_index i JOIN pg_attribute a
              ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = CAST(:t AS regclass) AND a.attname = :c AND i.indpred IS NULL
        """),
            {"t": tbl, "c": col},
        ).scalar()
        assert leading >= 1, f"{tbl}.{col} has no index"


def test_email_is_unique_case_insensitively(session) -> None:
    f.make_user(session, email="jane@example.com")
    _fails(session, lambda: f.make_user(session, email="JANE@Example.COM"))


def test_bad_email_format_is_refused(session) -> None:
    _fails(session, lambda: f.make_user(session, email="not-an-email"))


def test_negative_prices_are_refused(session) -> None:
    org = f.make_org(session)
    _fails(session, lambda: f.make_content(session, org, price_cents=-1))
    content = f.make_content(session, org)
    customer = f.make_user(session)
    _fails(session, lambda: f.make_purchase(session, customer, content, price_paid_cents=-5))


def test_content_slug_unique_per_org_among_live_rows(session) -> None:
    org, other = f.make_org(session), f.make_org(session)
    first = f.make_content(session, org, slug="intro")
    _fails(session, lambda: f.make_content(session, org, slug="intro"))
    f.make_content(session, other, slug="intro")  # another organization may reuse it
    first.deleted_at = datetime.now(UTC)
    session.flush()
    f.make_content(session, org, slug="intro")  # a soft-deleted row frees the slug


def test_one_live_purchase_per_customer_and_content(session) -> None:
    org = f.make_org(session)
    content = f.make_content(session, org)
    customer = f.make_user(session)
    f.make_purchase(session, customer, content, status=m.PurchaseStatus.pending)
    _fails(session, lambda: f.make_purchase(session, customer, content))
    other = f.make_content(session, org)
    refunded = f.make_purchase(session, customer, other)
    refunded.refunded_at = datetime.now(UTC)
    session.flush()
    f.make_purchase(session, customer, other)  # a refunded purchase does not block buying again
    f.make_purchase(session, customer, other, status=m.PurchaseStatus.failed)  # failed ones never block


def test_checkout_session_id_is_unique(session) -> None:
    org = f.make_org(session)
    customer = f.make_user(session)
    f.make_purchase(session, customer, f.make_content(session, org), stripe_checkout_session_id="cs_1")
    _fails(
        session,
        lambda: f.make_purchase(
            session, customer, f.make_content(session, org), stripe_checkout_session_id="cs_1"
        ),
    )


def test_playback_unique_per_user_and_media(session) -> None:
    org = f.make_org(session)
    media = f.make_media(session, org)
    user = f.make_user(session)
    session.add(m.VideoPlayback(user_id=user.id, media_item_id=media.id))
    session.flush()
    _fails(
        session,
        lambda: (session.add(m.VideoPlayback(user_id=user.id, media_item_id=media.id)), session.flush()),
    )


def test_deleting_a_user_cascades_sessions_but_is_restricted_by_purchases(session) -> None:
    org = f.make_org(session)
    user = f.make_user(session)
    f.make_membership(session, org, user)
    session.add(m.Session(user_id=user.id, token="tok", expires_at=datetime.now(UTC)))
    session.flush()
    session.execute(delete(m.User).where(m.User.id == user.id))
    assert session.execute(text("SELECT count(*) FROM sessions")).scalar() == 0
    assert session.execute(text("SELECT count(*) FROM organization_members")).scalar() == 0

    buyer = f.make_user(session)
    f.make_purchase(session, buyer, f.make_content(session, org))
    _fails(session, lambda: session.execute(delete(m.User).where(m.User.id == buyer.id)))


def test_deleting_an_org_cascades_members_but_is_restricted_by_media(session) -> None:
    org = f.make_org(session)
    f.make_membership(session, org, f.make_user(session))
    session.execute(delete(m.Organization).where(m.Organization.id == org.id))
    assert session.execute(text("SELECT count(*) FROM organization_members")).scalar() == 0

    busy = f.make_org(session)
    f.make_media(session, busy)
    _fails(session, lambda: session.execute(delete(m.Organization).where(m.Organization.id == busy.id)))


def test_ids_and_timestamps_default_in_the_database(session) -> None:
    row = session.execute(
        text(
            "INSERT INTO categories (name, slug) VALUES ('Film', 'film') RETURNING id, created_at, updated_at"
        )
    ).one()
    assert row.id is not None and row.created_at.tzinfo is not None and row.updated_at is not None
