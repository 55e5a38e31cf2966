"""`codex content`: the rules the first test file leaves out: limits, update semantics, audit details,
list filters and paging errors, and the delete count."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from services.core import models as m
from tests import factories as f

OWNER = "owner@example.com"
DESCRIPTION = "A long enough description."


@pytest.fixture
def world(session):  # type: ignore[no-untyped-def]
    owner = f.make_owner(session, email=OWNER)
    org, other = f.make_org(session, slug="studio"), f.make_org(session, slug="elsewhere")
    world = {
        "owner": owner,
        "org": org,
        "other": other,
        "media": f.make_media(session, org),
        "film": f.make_category(session, slug="film"),
        "music": f.make_category(session, slug="music"),
    }
    session.commit()
    return world


@pytest.fixture
def ccli(cli):  # type: ignore[no-untyped-def]
    return cli.with_settings(codex_operator_email=OWNER)


def _create(ccli, world, *extra: str, title: str = "Morning Session"):  # type: ignore[no-untyped-def]
    result = ccli(
        "content", "create", "--org", "studio", "--media", str(world["media"].id), "--title", title,
        "--description", DESCRIPTION, "--price-cents", "999", *extra,
    )  # fmt: skip
    return result


def _created(ccli, world, *extra: str, title: str = "Morning Session") -> dict:  # type: ignore[no-untyped-def]
    result = _create(ccli, world, "--json", *extra, title=title)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--price-cents", "100000000"), "Price must be a whole number of cents from 0 to 99,999,999"),
        (("--title", "Bell\x07char"), "Title must not contain control characters"),
        (("--title", "Two\nlines"), "Title must not contain control characters"),
        (
            ("--description", "Has an escape \x1b[2J inside"),
            "Description must not contain control characters",
        ),
        (("--tag", "bad\x1btag"), "Tags must not contain control characters"),
        (("--title", "Invoice \u202egnp.exe"), "Title must not contain control characters"),
        (("--title", "Isolated \u2066text\u2069"), "Title must not contain control characters"),
        (("--description", "A description with \u202a embedding"), "Description must not contain"),
        (("--currency", "us1"), "three-letter code"),
    ],
)
def test_values_the_database_would_choke_on_are_refused_up_front(ccli, world, session, args, message) -> None:  # type: ignore[no-untyped-def]
    result = _create(ccli, world, *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "Unexpected error" not in result.stderr
    assert session.scalars(select(m.Content)).all() == []


def test_the_largest_price_and_multiline_descriptions_are_accepted(ccli, world) -> None:
    data = _created(ccli, world, "--price-cents", "99999999", "--currency", "EUR")
    assert data["price_cents"] == 99_999_999 and data["currency"] == "eur"
    multi = ccli(
        "content",
        "update",
        data["id"],
        "--org",
        "studio",
        "--description",
        "Line one.\n\tLine two.",
        "--json",
    )
    assert multi.exit_code == 0 and json.loads(multi.stdout)["description"] == "Line one.\n\tLine two."


def test_title_and_description_are_counted_after_trimming(ccli, world) -> None:
    assert _create(ccli, world, title="  ab  ").exit_code == 2
    assert _created(ccli, world, title="  abc  ")["title"] == "abc"
    short = _create(ccli, world, "--description", "   nine    ", title="Another")
    assert short.exit_code == 2 and "(got 4)" in short.stderr


def test_changing_the_title_keeps_the_slug_unless_slug_is_given(ccli, world, session) -> None:
    data = _created(ccli, world)
    renamed = json.loads(
        ccli(
            "content", "update", data["id"], "--org", "studio", "--title", "Evening Session", "--json"
        ).stdout
    )
    assert renamed["title"] == "Evening Session" and renamed["slug"] == "morning-session"
    moved = ccli("content", "update", data["id"], "--org", "studio", "--slug", "Evening Session!", "--json")
    assert moved.exit_code == 0 and json.loads(moved.stdout)["slug"] == "evening-session"
    other = _created(ccli, world, title="Other")
    taken = ccli("content", "update", other["id"], "--org", "studio", "--slug", "evening-session")
    assert (
        taken.exit_code == 1
        and "Slug 'evening-session' already exists in organization studio: choose another title or "
        "give a slug (--slug)."
        in taken.stderr
    )
    # Its own slug is not a clash.
    same = ccli("content", "update", data["id"], "--org", "studio", "--slug", "evening-session")
    assert same.exit_code == 0, same.output


def test_an_invalid_update_changes_nothing(ccli, world, session) -> None:
    data = _created(ccli, world, "--tag", "Jazz")
    refused = ccli(
        "content", "update", data["id"], "--org", "studio", "--title", "New title", "--description", "short",
    )  # fmt: skip
    assert refused.exit_code == 2 and "Description must be 10 to 5000 characters" in refused.stderr
    for args, message in [
        (("--price-cents", "-5"), "Price must be"),
        (("--category", "nope"), "Category 'nope' not found"),
        (tuple(x for i in range(11) for x in ("--tag", f"t{i}")), "At most 10 tags"),
    ]:
        result = ccli("content", "update", data["id"], "--org", "studio", *args)
        assert result.exit_code in (2, 3) and message in result.stderr, args
    shown = json.loads(ccli("content", "show", data["id"], "--org", "studio", "--json").stdout)
    assert (shown["title"], shown["price_cents"], shown["tags"]) == ("Morning Session", 999, ["Jazz"])
    actions = session.scalars(select(m.AuditLog.action)).all()
    assert actions == ["content.create"]


def test_update_replaces_tags_and_category_and_can_clear_them(ccli, world, session) -> None:
    data = _created(ccli, world, "--category", "film", "--tag", "Jazz", "--tag", "Live")
    changed = json.loads(
        ccli(
            "content",
            "update",
            data["id"],
            "--org",
            "studio",
            "--category",
            "music",
            "--tag",
            "Blues",
            "--json",
        ).stdout  # fmt: skip
    )
    assert changed["category"] == "music" and changed["tags"] == ["Blues"]
    cleared = json.loads(
        ccli(
            "content", "update", data["id"], "--org", "studio", "--category", "", "--clear-tags", "--json"
        ).stdout
    )
    assert cleared["category"] is None and cleared["tags"] == []
    # Tags stay in the organization's vocabulary for the next item.
    assert session.scalars(select(m.Tag.slug).order_by(m.Tag.slug)).all() == ["blues", "jazz", "live"]
    both = ccli("content", "update", data["id"], "--org", "studio", "--tag", "x", "--clear-tags")
    assert both.exit_code == 2 and "--clear-tags" in both.stderr


def test_every_change_is_audited_with_the_operator_and_what_changed(ccli, world, session) -> None:
    data = _created(ccli, world)
    steps = [
        ("update", "--price-cents", "1299", "--title", "Morning Session, remastered"),
        ("publish",),
        ("unpublish",),
        ("delete", "--yes"),
    ]
    for command, *args in steps:
        result = ccli("content", command, data["id"], "--org", "studio", *args)
        assert result.exit_code == 0, result.output
    rows = session.scalars(select(m.AuditLog).order_by(m.AuditLog.at, m.AuditLog.id)).all()
    by_action = {row.action: row for row in rows}
    assert sorted(by_action) == [
        "content.create",
        "content.delete",
        "content.publish",
        "content.unpublish",
        "content.update",
    ]
    assert all(r.actor == OWNER and r.actor_id == world["owner"].id for r in rows)
    assert all(r.target_type == "content" and r.target_id == data["id"] for r in rows)
    assert by_action["content.create"].details["slug"] == "morning-session"
    update = by_action["content.update"].details
    assert update["price_cents"] == 1299 and update["title"] == "Morning Session, remastered"


def test_publish_sets_published_at_and_unpublish_returns_to_draft(ccli, world) -> None:
    data = _created(ccli, world)
    assert data["published_at"] is None
    published = json.loads(ccli("content", "publish", data["id"], "--org", "studio", "--json").stdout)
    assert published["status"] == "published" and published["published_at"]
    draft = json.loads(ccli("content", "unpublish", data["id"], "--org", "studio", "--json").stdout)
    assert draft["status"] == "draft"
    text = ccli("content", "publish", data["id"], "--org", "studio")
    assert text.exit_code == 0 and text.stdout.startswith("Published morning-session")


def test_delete_says_how_many_purchases_block_it(ccli, world, session) -> None:
    content = f.make_content(session, world["org"], media=world["media"])
    for _ in range(2):
        f.make_purchase(session, f.make_user(session), content)
    f.make_purchase(session, f.make_user(session), content, refunded_at=datetime.now(UTC))
    session.commit()
    refused = ccli("content", "delete", str(content.id), "--org", "studio", "--yes")
    assert refused.exit_code == 1 and f"{content.slug} has 2" in refused.stderr
    dry = ccli("content", "delete", str(content.id), "--org", "studio", "--dry-run")
    assert dry.exit_code == 1 and "has 2" in dry.stderr


def test_delete_dry_run_json_changes_nothing(ccli, world, session) -> None:
    data = _created(ccli, world)
    dry = ccli("content", "delete", data["id"], "--org", "studio", "--dry-run", "--json")
    assert dry.exit_code == 0 and json.loads(dry.stdout) == {"dry_run": True, "would_delete": data}
    assert session.scalars(select(m.AuditLog.action)).all() == ["content.create"]
    assert ccli("content", "show", data["id"], "--org", "studio").exit_code == 0


def test_list_is_scoped_filtered_and_checks_its_options(ccli, world, session) -> None:
    draft = _created(ccli, world, title="Draft one")
    live = _created(ccli, world, title="Live one")
    assert ccli("content", "publish", live["id"], "--org", "studio").exit_code == 0
    f.make_content(session, world["other"], slug="not-ours")
    gone = f.make_content(session, world["org"], media=world["media"], deleted_at=datetime.now(UTC))
    session.commit()

    def ids(*args: str) -> list[str]:
        result = ccli("content", "list", "--org", "studio", "--json", *args)
        assert result.exit_code == 0, result.output
        return [item["id"] for item in json.loads(result.stdout)["items"]]

    assert ids() == [live["id"], draft["id"]]  # newest first, nothing from elsewhere, nothing deleted
    assert str(gone.id) not in ids()
    assert ids("--status", "published") == [live["id"]]
    assert ids("--status", "DRAFT") == [draft["id"]]
    by_id = ccli("content", "list", "--org", str(world["org"].id), "--json")
    assert [i["id"] for i in json.loads(by_id.stdout)["items"]] == [live["id"], draft["id"]]
    for args, message in [
        (("--status", "live"), "Unknown status 'live'"),
        (("--limit", "0"), "The page size must be between 1 and 500 (--limit)."),
        (
            ("--cursor", "yesterday"),
            "Invalid cursor 'yesterday': pass the value a previous page printed (--cursor).",
        ),
    ]:
        result = ccli("content", "list", "--org", "studio", *args)
        assert result.exit_code == 2 and message in result.stderr, args
