"""`codex content ...`: every validation rule, organization scoping, publish and delete rules, audit."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from services.core import models as m
from tests import factories as f

OWNER = "owner@example.com"


@pytest.fixture
def world(session):  # type: ignore[no-untyped-def]
    owner = f.make_owner(session, email=OWNER)
    org, other = f.make_org(session, slug="studio"), f.make_org(session, slug="elsewhere")
    world = {
        "org": org,
        "other": other,
        "ready": f.make_media(session, org),
        "uploaded": f.make_media(session, org, status=m.MediaStatus.uploaded),
        "foreign": f.make_media(session, other),
        "category": f.make_category(session, slug="film"),
        "owner": owner,
    }
    session.commit()
    return world


@pytest.fixture
def ccli(cli):  # type: ignore[no-untyped-def]
    return cli.with_settings(codex_operator_email=OWNER)


def _create(ccli, world, *extra: str, title: str = "Café & Crème: Part 2!", media: str = "ready"):  # type: ignore[no-untyped-def]
    return ccli(
        "content",
        "create",
        "--org",
        "studio",
        "--media",
        str(world[media].id),
        "--title",
        title,
        "--description",
        "A long enough description.",
        "--price-cents",
        "999",
        *extra,
    )


def test_create_generates_the_slug_and_tags(ccli, world, session) -> None:
    result = _create(
        ccli, world, "--category", "film", "--tag", "Jazz", "--tag", "jazz ", "--tag", "Live", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["slug"] == "cafe-creme-part-2" and data["status"] == "draft" and data["price"] == "$9.99"
    assert data["category"] == "film" and data["tags"] == ["Jazz", "Live"]
    assert session.scalars(select(m.Tag.slug).order_by(m.Tag.slug)).all() == ["jazz", "live"]
    assert session.scalars(select(m.AuditLog.action)).all() == ["content.create"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--title", "ab"), "Title must be 3 to 255 characters"),
        (("--title", "x" * 256), "Title must be 3 to 255 characters"),
        (("--description", "too short"), "Description must be 10 to 5000 characters"),
        (("--description", "y" * 5001), "Description must be 10 to 5000 characters"),
        (("--price-cents", "-1"), "Price must be a whole number of cents"),
        (("--currency", "dollars"), "three-letter code"),
    ],
)
def test_validation_rules(ccli, world, session, args, message) -> None:  # type: ignore[no-untyped-def]
    base = {
        "--title": "A fine title",
        "--description": "A long enough description.",
        "--price-cents": "0",
        "--currency": "usd",
    }
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [x for pair in base.items() for x in pair]
    result = ccli("content", "create", "--org", "studio", "--media", str(world["ready"].id), *flat)
    assert result.exit_code == 2 and message in result.stderr
    assert session.scalars(select(m.Content)).all() == []


def test_eleven_tags_are_refused(ccli, world) -> None:
    tags = [x for i in range(11) for x in ("--tag", f"tag {i}")]
    result = _create(ccli, world, *tags)
    assert result.exit_code == 2 and "At most 10 tags" in result.stderr


def test_unknown_category_and_foreign_media_are_not_found(ccli, world) -> None:
    missing = _create(ccli, world, "--category", "nope")
    assert missing.exit_code == 3 and "Category 'nope' not found" in missing.stderr
    foreign = _create(ccli, world, media="foreign")
    assert foreign.exit_code == 3 and "Media item not found" in foreign.stderr


def test_duplicate_slug_in_one_org_is_a_conflict_but_not_across_orgs(ccli, world, session) -> None:
    assert _create(ccli, world).exit_code == 0
    again = _create(ccli, world, title="Cafe Creme Part 2")
    assert (
        again.exit_code == 1
        and "Slug 'cafe-creme-part-2' already exists in organization studio" in again.stderr
    )
    f.make_owner(session, email="other-owner@example.com")
    session.commit()
    other = ccli(
        "content",
        "create",
        "--org",
        "elsewhere",
        "--media",
        str(world["foreign"].id),
        "--title",
        "Café & Crème: Part 2!",
        "--description",
        "A long enough description.",
        "--price-cents",
        "500",
    )
    assert other.exit_code == 0, other.output


def test_ids_from_another_org_are_not_found(ccli, world, session) -> None:
    foreign = f.make_content(session, world["other"], media=world["foreign"])
    session.commit()
    for command in (
        ["show"],
        ["publish"],
        ["unpublish"],
        ["delete", "--yes"],
        ["update", "--title", "New one"],
    ):
        result = ccli("content", command[0], str(foreign.id), "--org", "studio", *command[1:])
        assert result.exit_code == 3 and "Content not found" in result.stderr, command


def test_publish_requires_ready_media(ccli, world, session) -> None:
    draft = json.loads(_create(ccli, world, "--json", media="uploaded", title="Not ready yet").stdout)
    refused = ccli("content", "publish", draft["id"], "--org", "studio")
    assert refused.exit_code == 1 and "Media not ready" in refused.stderr
    ready = json.loads(_create(ccli, world, "--json", title="Ready to go").stdout)
    published = ccli("content", "publish", ready["id"], "--org", "studio", "--json")
    assert published.exit_code == 0 and json.loads(published.stdout)["status"] == "published"
    back = ccli("content", "unpublish", ready["id"], "--org", "studio", "--json")
    assert json.loads(back.stdout)["status"] == "draft"
    actions = session.scalars(select(m.AuditLog.action).order_by(m.AuditLog.at, m.AuditLog.action)).all()
    assert "content.publish" in actions and "content.unpublish" in actions


def test_operator_must_be_a_platform_owner(cli, world) -> None:
    nobody = _create(cli, world)
    assert nobody.exit_code == 2 and "--by" in nobody.stderr
    customer = _create(cli.with_settings(codex_operator_email="someone@example.com"), world)
    assert customer.exit_code == 1 and "not a platform_owner" in customer.stderr


def test_delete_is_refused_while_customers_own_it(ccli, world, session) -> None:
    content = f.make_content(session, world["org"], media=world["ready"])
    purchase = f.make_purchase(session, f.make_user(session), content)
    session.commit()
    refused = ccli("content", "delete", str(content.id), "--org", "studio", "--yes")
    assert refused.exit_code == 1 and "Cannot delete content with completed purchases" in refused.stderr
    purchase.refunded_at = datetime.now(UTC)
    session.commit()
    dry = ccli("content", "delete", str(content.id), "--org", "studio", "--dry-run")
    assert dry.exit_code == 0 and "Would delete" in dry.stdout
    session.expire_all()
    assert session.get(m.Content, content.id).deleted_at is None
    done = ccli("content", "delete", str(content.id), "--org", "studio", "--yes")
    assert done.exit_code == 0, done.output
    session.expire_all()
    assert session.get(m.Content, content.id).deleted_at is not None
    assert ccli("content", "show", str(content.id), "--org", "studio").exit_code == 3


def test_delete_off_a_terminal_needs_yes(ccli, world, session) -> None:
    content = f.make_content(session, world["org"], media=world["ready"])
    session.commit()
    result = ccli("content", "delete", str(content.id), "--org", "studio")
    assert result.exit_code == 2 and "--yes" in result.stderr


def test_update_and_list_with_pagination(ccli, world, session) -> None:
    created = [json.loads(_create(ccli, world, "--json", title=f"Episode {i}").stdout) for i in range(3)]
    updated = ccli(
        "content",
        "update",
        created[0]["id"],
        "--org",
        "studio",
        "--title",
        "Episode zero",
        "--price-cents",
        "0",
        "--tag",
        "Pilot",
        "--json",
    )
    data = json.loads(updated.stdout)
    assert data["title"] == "Episode zero" and data["slug"] == "episode-0" and data["price"] == "$0.00"
    assert data["tags"] == ["Pilot"]
    page = json.loads(ccli("content", "list", "--org", "studio", "--limit", "2", "--json").stdout)
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = json.loads(
        ccli(
            "content", "list", "--org", "studio", "--limit", "2", "--cursor", page["next_cursor"], "--json"
        ).stdout
    )
    ids = [i["id"] for i in page["items"] + rest["items"]]
    assert sorted(ids) == sorted(c["id"] for c in created) and rest["next_cursor"] is None
    assert ccli("content", "update", created[1]["id"], "--org", "studio").exit_code == 2


def test_a_title_without_slug_characters_needs_an_explicit_slug(ccli, world) -> None:
    refused = _create(ccli, world, title="日本語のビデオ")
    assert refused.exit_code == 2 and "give a slug (--slug)." in refused.stderr
    created = _create(ccli, world, "--slug", "Nihongo Video", "--json", title="日本語のビデオ")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["slug"] == "nihongo-video"


def test_tag_rules(ccli, world, session) -> None:
    too_long = _create(ccli, world, "--tag", "x" * 51)
    assert too_long.exit_code == 2 and "longer than 50 characters" in too_long.stderr
    no_letters = _create(ccli, world, "--tag", "!!!")
    assert no_letters.exit_code == 2 and "Tag '!!!' has no letters or digits" in no_letters.stderr
    ten = [x for i in range(10) for x in ("--tag", f"tag {i}")]
    assert _create(ccli, world, *ten, title="Ten tags").exit_code == 0
    # Tags belong to an organization: the same name elsewhere is another row; reuse adds none.
    assert _create(ccli, world, "--tag", "tag 0", title="Reuses a tag").exit_code == 0
    other = ccli(
        "content", "create", "--org", "elsewhere", "--media", str(world["foreign"].id), "--title", "Abroad",
        "--description", "A long enough description.", "--price-cents", "0", "--tag", "Tag 0",
    )  # fmt: skip
    assert other.exit_code == 0, other.output
    rows = session.execute(select(m.Tag.organization_id, m.Tag.slug).where(m.Tag.slug == "tag-0")).all()
    assert sorted(str(org) for org, _ in rows) == sorted([str(world["org"].id), str(world["other"].id)])
    assert session.scalar(select(func.count()).select_from(m.Tag)) == 11


def test_missing_deleted_or_malformed_media_is_refused(ccli, world, session) -> None:
    gone = f.make_media(session, world["org"], deleted_at=datetime.now(UTC))
    session.commit()
    for media_id in (str(uuid.uuid4()), str(gone.id)):
        result = ccli(
            "content", "create", "--org", "studio", "--media", media_id, "--title", "Lost media",
            "--description", "A long enough description.", "--price-cents", "0",
        )  # fmt: skip
        assert result.exit_code == 3 and f"Media item not found: {media_id}" in result.stderr
    malformed = ccli(
        "content", "create", "--org", "studio", "--media", "nope", "--title", "Lost media",
        "--description", "A long enough description.", "--price-cents", "0",
    )  # fmt: skip
    assert malformed.exit_code == 2 and "not a media item id" in malformed.stderr
    unknown_org = ccli("content", "list", "--org", "nowhere")
    assert unknown_org.exit_code == 3 and "Organization 'nowhere' not found" in unknown_org.stderr


def test_show_by_slug_and_list_as_a_table(ccli, world, session) -> None:
    created = json.loads(_create(ccli, world, "--category", "film", "--json").stdout)
    shown = ccli("content", "show", "cafe-creme-part-2", "--org", "studio", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["id"] == created["id"]
    listed = ccli("content", "list", "--org", "studio")
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert lines[0] == ["ID", "SLUG", "TITLE", "STATUS", "PRICE", "CATEGORY"]
    assert lines[1] == [created["id"], "cafe-creme-part-2", "Café & Crème: Part 2!", "draft", "$9.99", "film"]
    elsewhere = ccli("content", "show", "cafe-creme-part-2", "--org", "elsewhere")
    assert elsewhere.exit_code == 3


def test_publish_is_audited_with_the_operator(ccli, world, session) -> None:
    content = f.make_content(session, world["org"], media=world["ready"], status=m.ContentStatus.draft)
    session.commit()
    assert ccli("content", "publish", str(content.id), "--org", "studio").exit_code == 0
    again = ccli("content", "publish", str(content.id), "--org", "studio", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["published_at"]
    rows = session.scalars(select(m.AuditLog).where(m.AuditLog.action == "content.publish")).all()
    assert len(rows) == 1  # publishing published content changes nothing
    assert rows[0].actor == OWNER and rows[0].actor_id == world["owner"].id
    assert rows[0].target_id == str(content.id) and rows[0].details["organization"] == "studio"


def test_publish_refuses_deleted_media(ccli, world, session) -> None:
    media = f.make_media(session, world["org"])
    content = f.make_content(session, world["org"], media=media, status=m.ContentStatus.draft)
    media.deleted_at = datetime.now(UTC)
    session.commit()
    refused = ccli("content", "publish", str(content.id), "--org", "studio")
    assert refused.exit_code == 1 and "Media not ready" in refused.stderr


def test_delete_waits_for_a_checkout_in_progress(ccli, world, session) -> None:
    content = f.make_content(session, world["org"], media=world["ready"])
    purchase = f.make_purchase(session, f.make_user(session), content, status=m.PurchaseStatus.pending)
    session.commit()
    refused = ccli("content", "delete", str(content.id), "--org", "studio", "--yes")
    assert refused.exit_code == 1 and "checkout(s) in progress" in refused.stderr
    purchase.status = m.PurchaseStatus.failed
    session.commit()
    deleted = ccli("content", "delete", str(content.id), "--org", "studio", "--yes", "--json")
    assert deleted.exit_code == 0 and json.loads(deleted.stdout)["status"] == "archived"
    audit = session.scalars(select(m.AuditLog).where(m.AuditLog.action == "content.delete")).one()
    assert audit.target_id == str(content.id)


def test_a_deleted_slug_can_be_used_again(ccli, world, session) -> None:
    first = json.loads(_create(ccli, world, "--json").stdout)
    assert ccli("content", "delete", first["id"], "--org", "studio", "--yes").exit_code == 0
    again = _create(ccli, world, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["slug"] == first["slug"]
