"""`codex users create` and `codex users set-role`: customers made by an operator, roles changed, audited."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from services.core.models import AuditLog, User, UserRole
from tests.factories import make_content, make_org, make_owner


def _user(session, email: str) -> User:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalars(select(User).where(func.lower(User.email) == email.lower())).one()


def test_create_a_customer_who_can_then_be_granted_access(cli, session) -> None:
    owner = make_owner(session, email="owner@codex.example")
    content = make_content(
        session, make_org(session, slug="bakery"), title="Sourdough Basics", slug="sourdough"
    )
    session.commit()
    created = cli(
        "users",
        "create",
        "--email",
        "Jane@Example.com",
        "--name",
        "Jane Doe",
        "--verified",
        "--by",
        owner.email,
    )
    assert created.exit_code == 0, created.output
    # The operator typed the address: it comes back as typed, not masked.
    assert created.stdout.startswith("Created customer Jane@Example.com (")
    jane = _user(session, "jane@example.com")
    assert (jane.name, jane.role, jane.email_verified) == ("Jane Doe", UserRole.customer, True)
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "user.create")).one()
    assert audit.actor == owner.email and audit.target_id == str(jane.id)
    assert audit.details == {"role": "customer", "email_verified": True}
    granted = cli(
        "access", "grant", "--user", "jane@example.com", "--content", "sourdough", "--org", "bakery",
        "--reason", "Giveaway winner", "--by", owner.email,
    )  # fmt: skip
    assert granted.exit_code == 0, granted.output
    assert f'Granted Jane@Example.com access to "Sourdough Basics" ({content.id})' in granted.stdout


def test_create_refuses_duplicates_bad_emails_names_and_roles(cli, session) -> None:
    owner = make_owner(session, email="owner@codex.example")
    session.commit()
    base = ("users", "create", "--by", owner.email)
    first = cli(*base, "--email", "ann@example.com", "--name", "Ann", "--json")
    assert first.exit_code == 0 and json.loads(first.stdout)["role"] == "customer"
    for args, code, message in [
        (
            ("--email", "ANN@example.com", "--name", "Ann"),
            1,
            "A user with email ANN@example.com already exists.",
        ),
        (("--email", "not-an-email", "--name", "Ann"), 2, "'not-an-email' is not a valid email address."),
        (("--email", "b@example.com", "--name", "Evil \u202egnp.exe"), 2, "control characters or bidi"),
        (("--email", "b@example.com", "--name", "  "), 2, "Name must be 1 to 255 characters"),
        (("--email", "b@example.com", "--name", "B", "--role", "creator"), 2, "Unknown role 'creator'"),
    ]:
        result = cli(*base, *args)
        assert result.exit_code == code and message in result.stderr, (args, result.output)
    customer_by = cli("users", "create", "--email", "c@example.com", "--name", "C", "--by", "ann@example.com")
    assert (
        customer_by.exit_code == 1
        and "Operator ann@example.com is not a platform_owner" in customer_by.stderr
    )
    assert session.scalar(select(func.count()).select_from(User)) == 2


def test_set_role_promotes_and_demotes_with_an_audit_row_and_keeps_one_owner(cli, session) -> None:
    owner = make_owner(session, email="owner@codex.example")
    session.commit()
    assert (
        cli("users", "create", "--email", "ops@example.com", "--name", "Ops", "--by", owner.email).exit_code
        == 0
    )
    promoted = cli("users", "set-role", "ops@example.com", "platform_owner", "--by", owner.email)
    assert promoted.exit_code == 0, promoted.output
    assert promoted.stdout.strip() == "ops@example.com is now a platform_owner (was customer)."
    again = cli("users", "set-role", "ops@example.com", "platform_owner", "--by", owner.email)
    assert "already a platform_owner; nothing changed" in again.stdout
    demoted = cli("users", "set-role", str(owner.id), "customer", "--by", "ops@example.com")
    assert demoted.exit_code == 0 and _user(session, owner.email).role == UserRole.customer
    last = cli("users", "set-role", "ops@example.com", "customer", "--by", "ops@example.com")
    assert last.exit_code == 1 and "is the last platform owner" in last.stderr
    bad = cli("users", "set-role", "ops@example.com", "admin", "--by", "ops@example.com")
    assert (
        bad.exit_code == 2 and "Unknown role 'admin'; choose one of customer, platform_owner." in bad.stderr
    )
    missing = cli("users", "set-role", "ghost@example.com", "customer", "--by", "ops@example.com")
    assert missing.exit_code == 3 and "User ghost@example.com not found." in missing.stderr
    rows = session.scalars(select(AuditLog).where(AuditLog.action == "user.set_role")).all()
    assert [r.details for r in rows] == [
        {"from": "customer", "to": "platform_owner"},
        {"from": "platform_owner", "to": "customer"},
    ]
