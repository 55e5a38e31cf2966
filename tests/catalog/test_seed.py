"""`codex seed owner` and `codex seed categories`: idempotent, audited, invite email with a working token."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from services.core import models as m
from tests import factories as f


def _count(session, model) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def test_seed_owner_creates_user_org_and_membership_once(cli, session) -> None:
    first = cli(
        "seed",
        "owner",
        "--email",
        "Ada@Example.com",
        "--name",
        "Ada Lovelace",
        "--org-name",
        "Ada Films",
        "--json",
    )
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["organization_slug"] == "ada-films" and not data["unchanged"]
    user = session.scalars(select(m.User)).one()
    assert user.role == m.UserRole.platform_owner and user.email_verified
    member = session.scalars(select(m.OrganizationMember)).one()
    assert member.role == m.MemberRole.owner and str(member.user_id) == data["user_id"]

    again = cli(
        "seed", "owner", "--email", "ada@example.com", "--name", "Ada Lovelace", "--org-name", "Ada Films"
    )
    assert again.exit_code == 0 and "Nothing to change" in again.stdout
    assert (
        _count(session, m.User),
        _count(session, m.Organization),
        _count(session, m.OrganizationMember),
    ) == (1, 1, 1)
    assert session.scalars(select(m.AuditLog.action)).all() == ["seed.owner"]


def test_seed_owner_promotes_an_existing_customer(cli, session) -> None:
    f.make_user(session, email="grace@example.com", name="Grace", email_verified=False)
    session.commit()
    result = cli("seed", "owner", "--email", "grace@example.com", "--name", "Grace Hopper")
    assert result.exit_code == 0
    assert "user promoted to platform_owner" in result.stdout and "email marked verified" in result.stdout
    session.expire_all()
    user = session.scalars(select(m.User)).one()
    assert user.role == m.UserRole.platform_owner and user.email_verified and user.name == "Grace"


def test_seed_owner_refuses_bad_input(cli, session) -> None:
    bad_email = cli("seed", "owner", "--email", "not-an-email", "--name", "X")
    assert bad_email.exit_code == 2 and "not a valid email address" in bad_email.stderr
    bad_slug = cli("seed", "owner", "--email", "a@example.com", "--name", "A", "--org-slug", "Bad Slug!")
    assert bad_slug.exit_code == 2 and "slug" in bad_slug.stderr
    assert _count(session, m.User) == 0


def test_invite_email_carries_a_working_token(cli, session, outbox) -> None:
    result = cli.with_settings(app_url="https://codex.example")(
        "seed", "owner", "--email", "ada@example.com", "--name", "Ada", "--send-invite"
    )
    assert result.exit_code == 0, result.output
    assert "Invite sent" in result.stdout
    [message] = outbox.messages()
    assert "ada@example.com" in message.to
    link = re.search(r"https://codex\.example/reset-password\?token=[^\s\"<]+", message.text).group(0)
    token = parse_qs(urlsplit(link).query)["token"][0]
    stored = session.scalars(select(m.VerificationToken).where(m.VerificationToken.token == token)).one()
    assert stored.expires_at > datetime.now(UTC)
    assert (stored.expires_at - datetime.now(UTC)).total_seconds() <= 3600
    assert token not in result.output  # the token goes only to the owner's mailbox
    assert "1 hour" in message.text


def test_seed_categories_defaults_are_idempotent(cli, session) -> None:
    first = json.loads(cli("seed", "categories", "--json").stdout)
    assert len(first["created"]) >= 5 and first["updated"] == [] and first["unchanged"] == []
    rows = {c.slug: (c.name, c.sort_order) for c in session.scalars(select(m.Category))}
    second = json.loads(cli("seed", "categories", "--json").stdout)
    assert second["created"] == [] and second["updated"] == [] and sorted(second["unchanged"]) == sorted(rows)
    session.expire_all()
    assert {c.slug: (c.name, c.sort_order) for c in session.scalars(select(m.Category))} == rows


def test_seed_categories_from_a_file_reports_created_updated_unchanged(cli, session, tmp_path) -> None:
    f.make_category(session, slug="film", name="Film", sort_order=10, description=None)
    f.make_category(session, slug="music", name="Music", sort_order=30, description=None)
    session.commit()
    path = tmp_path / "categories.yaml"
    path.write_text(
        "- {name: Film, slug: film, sort_order: 10}\n"
        "- {name: Music & Concerts, slug: music, sort_order: 30}\n"
        "- {name: Café Talks, description: Conversations., sort_order: 70}\n"
    )
    result = cli("seed", "categories", "--file", str(path))
    assert result.exit_code == 0, result.output
    assert "1 created, 1 updated, 1 unchanged." in result.stdout
    session.expire_all()
    cats = {c.slug: c for c in session.scalars(select(m.Category))}
    assert cats["music"].name == "Music & Concerts" and cats["cafe-talks"].description == "Conversations."


def test_seed_categories_dry_run_and_bad_files(cli, session, tmp_path) -> None:
    dry = cli("seed", "categories", "--dry-run")
    assert dry.exit_code == 0 and "would be created" in dry.stdout
    assert _count(session, m.Category) == 0
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "not a list"}')
    result = cli("seed", "categories", "--file", str(bad))
    assert result.exit_code == 2 and "must hold a list" in result.stderr
    nameless = tmp_path / "nameless.json"
    nameless.write_text('[{"slug": "x"}]')
    assert "Category #1 has no name" in cli("seed", "categories", "--file", str(nameless)).stderr
    assert _count(session, m.Category) == 0


def test_rerun_with_invite_changes_no_rows_but_sends_a_fresh_link(cli, session, outbox) -> None:
    args = ("seed", "owner", "--email", "ada@example.com", "--name", "Ada")
    assert cli(*args).exit_code == 0
    again = cli(*args, "--send-invite", "--json")
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert data["unchanged"] and data["invite_sent"] is True
    [message] = outbox.messages()
    token = parse_qs(urlsplit(re.search(r"http\S+reset-password\?token=\S+", message.text).group(0)).query)
    stored = session.scalars(select(m.VerificationToken)).one()
    assert stored.token == token["token"][0]
    assert datetime.fromisoformat(data["invite_expires_at"]) == stored.expires_at
    actions = session.scalars(select(m.AuditLog.action).order_by(m.AuditLog.at)).all()
    assert actions == ["seed.owner", "seed.owner.invite"]
    audit = session.scalars(select(m.AuditLog).where(m.AuditLog.action == "seed.owner.invite")).one()
    assert stored.token not in json.dumps(audit.details)
    assert (_count(session, m.User), _count(session, m.Organization)) == (1, 1)


def test_a_failed_invite_email_keeps_the_owner_and_says_so(
    cli, session, resend_settings, resend_server
) -> None:
    resend_server.fail_next(2, status=500)  # the first try and the retry
    through_resend = cli.with_settings(
        resend_api_key=resend_settings.resend_api_key, resend_api_url=resend_settings.resend_api_url
    )
    result = through_resend("seed", "owner", "--email", "ada@example.com", "--name", "Ada", "--send-invite")
    assert result.exit_code == 1 and "invite email failed" in result.stderr
    assert "user created" in result.stdout
    assert _count(session, m.User) == 1 and _count(session, m.VerificationToken) == 1


@pytest.mark.commits
def test_two_seeds_at_once_make_one_owner(container, session) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from services.catalog.seeding import seed_owner

    def seed(_: int):  # type: ignore[no-untyped-def]
        return seed_owner(container, "ada@example.com", "Ada", org_name="Ada Films")

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(seed, range(2)))
    assert sorted(r.unchanged for r in results) == [False, True]
    assert (
        _count(session, m.User),
        _count(session, m.Organization),
        _count(session, m.OrganizationMember),
    ) == (1, 1, 1)
