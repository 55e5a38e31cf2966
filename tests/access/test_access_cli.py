"""`codex access check|grant|library` as an operator and a script see them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services.core.models import AuditLog, ContentPurchase, PurchaseStatus
from tests.factories import make_content, make_org, make_owner, make_purchase, make_user


def _setup(session, **user_kw):  # type: ignore[no-untyped-def]
    org = make_org(session)
    customer = make_user(session, email=user_kw.pop("email", "jane.doe@example.com"))
    content = make_content(session, org, title="Sourdough Basics")
    return org, customer, content


def test_check_exits_0_with_access_and_prints_one_line(cli, session) -> None:
    org, customer, content = _setup(session)
    purchase = make_purchase(session, customer, content)
    session.commit()
    result = cli("access", "check", "--user", "Jane.Doe@example.com", "--content", str(content.id))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith('yes: jane.doe@example.com has access to "Sourdough Basics"')
    assert str(purchase.id) in result.stdout and len(result.stdout.splitlines()) == 1


def test_check_exits_1_without_access_like_grep(cli, session) -> None:
    org, customer, content = _setup(session)
    session.commit()
    result = cli("access", "check", "--user", customer.email, "--content", str(content.id))
    assert result.exit_code == 1 and result.stdout.startswith("no: ") and "no purchase" in result.stdout
    assert result.stderr == ""
    quiet = cli("access", "check", "-q", "--user", customer.email, "--content", str(content.id))
    assert quiet.exit_code == 1 and quiet.output == ""


def test_check_on_a_refunded_purchase_exits_1_and_says_refunded(cli, session) -> None:
    org, customer, content = _setup(session)
    make_purchase(session, customer, content, refunded_at=datetime.now(UTC) - timedelta(days=1))
    session.commit()
    result = cli("access", "check", "--user", customer.email, "--content", str(content.id), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["has_access"] is False and "was refunded on" in data["reason"]


def test_check_by_user_id_masks_the_email(cli, session) -> None:
    org, customer, content = _setup(session)
    make_purchase(session, customer, content)
    session.commit()
    result = cli("access", "check", "--user", str(customer.id), "--content", str(content.id), "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and data["has_access"] is True and data["user"] == "j***@example.com"
    assert "jane.doe" not in result.stdout


def test_check_unknown_user_or_content_exits_3(cli, session) -> None:
    org, customer, content = _setup(session)
    session.commit()
    unknown_user = cli("access", "check", "--user", "nobody@example.com", "--content", str(content.id))
    # What the operator typed is echoed as typed.
    assert unknown_user.exit_code == 3 and "User nobody@example.com not found." in unknown_user.stderr
    deleted = make_content(session, org, deleted_at=datetime.now(UTC))
    session.commit()
    gone = cli("access", "check", "--user", customer.email, "--content", str(deleted.id))
    assert gone.exit_code == 3 and f"Content {deleted.id} not found." in gone.stderr
    unknown = cli("access", "check", "--user", customer.email, "--content", "42")
    assert unknown.exit_code == 3 and "Content 42 not found." in unknown.stderr


def test_grant_creates_a_free_completed_purchase_with_an_audit_row(cli, session) -> None:
    org, customer, content = _setup(session)
    owner = make_owner(session, email="owner@codex.example")
    session.commit()
    result = cli(
        "access", "grant", "--user", customer.email, "--content", str(content.id),
        "--reason", "Giveaway winner", "--by", owner.email, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    grant = json.loads(result.stdout)
    purchase = session.get(ContentPurchase, grant["purchase_id"])
    assert purchase.status == PurchaseStatus.completed and purchase.price_paid_cents == 0
    assert purchase.refunded_at is None and purchase.stripe_checkout_session_id is None
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "access.grant")).one()
    assert audit.actor_id == owner.id and audit.target_id == str(purchase.id)
    assert audit.details == {
        "customer_id": str(customer.id),
        "content_id": str(content.id),
        "reason": "Giveaway winner",
    }
    assert cli("access", "check", "--user", customer.email, "--content", str(content.id)).exit_code == 0


def test_grant_takes_the_operator_from_the_environment(cli, session) -> None:
    org, customer, content = _setup(session)
    make_owner(session, email="ops@codex.example")
    session.commit()
    as_ops = cli.with_settings(codex_operator_email="ops@codex.example")
    result = as_ops(
        "access", "grant", "--user", customer.email, "--content", str(content.id), "--reason", "VIP"
    )
    assert result.exit_code == 0, result.output
    assert "complimentary purchase" in result.stdout
    assert session.scalars(select(AuditLog.actor)).one() == "ops@codex.example"


def test_grant_is_refused_while_a_live_purchase_exists(cli, session) -> None:
    org, customer, content = _setup(session)
    owner = make_owner(session)
    existing = make_purchase(session, customer, content)
    pending_content = make_content(session, org)
    make_purchase(session, customer, pending_content, status=PurchaseStatus.pending)
    session.commit()
    args = ["--user", customer.email, "--reason", "again", "--by", owner.email]
    result = cli("access", "grant", "--content", str(content.id), *args)
    assert result.exit_code == 1
    assert f"already has access through purchase {existing.id}" in result.stderr
    pending = cli("access", "grant", "--content", str(pending_content.id), *args)
    assert pending.exit_code == 1 and "has a pending purchase" in pending.stderr
    session.expire_all()
    assert session.scalars(select(AuditLog)).all() == []
    assert len(session.scalars(select(ContentPurchase)).all()) == 2


def test_grant_after_a_refund_is_allowed(cli, session) -> None:
    org, customer, content = _setup(session)
    owner = make_owner(session)
    make_purchase(session, customer, content, refunded_at=datetime.now(UTC))
    session.commit()
    result = cli(
        "access", "grant", "--user", customer.email, "--content", str(content.id),
        "--reason", "goodwill", "--by", owner.email,
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_grant_needs_a_platform_owner_and_a_reason(cli, session) -> None:
    org, customer, content = _setup(session)
    not_owner = make_user(session, email="helper@codex.example")
    owner = make_owner(session)
    session.commit()
    base = ["access", "grant", "--user", customer.email, "--content", str(content.id)]
    nobody = cli(*base, "--reason", "x")
    assert nobody.exit_code == 2 and "--by" in nobody.stderr
    denied = cli(*base, "--reason", "x", "--by", not_owner.email)
    assert denied.exit_code == 1 and "is not a platform_owner" in denied.stderr
    blank = cli(*base, "--reason", "  ", "--by", owner.email)
    assert blank.exit_code == 2 and "reason" in blank.stderr
    session.expire_all()
    assert session.scalars(select(ContentPurchase)).all() == []


def test_library_lists_newest_first_without_refunded(cli, session) -> None:
    org, customer, content = _setup(session)
    newer = make_content(session, org, title="Croissants")
    refunded = make_content(session, org, title="Refunded one")
    make_purchase(session, customer, content, purchased_at=datetime(2025, 1, 1, tzinfo=UTC))
    make_purchase(session, customer, newer, purchased_at=datetime(2025, 2, 1, tzinfo=UTC))
    make_purchase(session, customer, refunded, refunded_at=datetime.now(UTC))
    session.commit()
    table = cli("access", "library", "--user", customer.email)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split("\t")[:2] == ["purchased", "title"]
    assert [line.split("\t")[1] for line in lines[1:]] == ["Croissants", "Sourdough Basics"]
    data = json.loads(cli("access", "library", "--user", customer.email, "--json").stdout)
    assert [item["title"] for item in data["items"]] == ["Croissants", "Sourdough Basics"]
    assert data["user"] == customer.email


def test_empty_library_says_so(cli, session) -> None:
    customer = make_user(session)
    session.commit()
    result = cli("access", "library", "--user", str(customer.id))
    assert result.exit_code == 0 and "has no content in their library" in result.stdout
    assert customer.email not in result.stdout


@pytest.mark.commits
def test_two_operators_granting_at_once_create_one_purchase(container, session) -> None:
    import threading

    from services.access.entitlements import grant_access
    from services.core.errors import Conflict

    org, customer, content = _setup(session)
    owner = make_owner(session)
    session.commit()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def grant() -> None:
        barrier.wait()
        try:
            grant_access(container, customer.email, str(content.id), "race", owner.email)
            outcomes.append("granted")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=grant) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "granted"]
    session.expire_all()
    assert len(session.scalars(select(ContentPurchase)).all()) == 1
    assert len(session.scalars(select(AuditLog)).all()) == 1
