"""`codex purchases list|show` and `codex users list|show`: filters, paging, masking, JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.factories import make_content, make_membership, make_org, make_owner, make_purchase, make_user

NOW = datetime.now(UTC)


def _rows(result) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [line.split("\t") for line in result.stdout.splitlines()[1:]]


def _catalog(session):  # type: ignore[no-untyped-def]
    """Five purchases a day apart (newest: index 0), one refunded, one pending, one failed."""
    org = make_org(session, slug="bakery")
    alice = make_user(session, email="alice@example.com")
    bob = make_user(session, email="bob@example.com")
    bread = make_content(session, org, title="Bread")
    cake = make_content(session, org, title="Cake")
    pie = make_content(session, org, title="Pie")
    p = [
        make_purchase(session, alice, bread, created_at=NOW - timedelta(hours=1)),
        make_purchase(session, bob, bread, created_at=NOW - timedelta(days=1), refunded_at=NOW),
        make_purchase(session, alice, cake, status="pending", created_at=NOW - timedelta(days=2)),
        make_purchase(session, bob, cake, status="failed", created_at=NOW - timedelta(days=3)),
        make_purchase(session, bob, pie, created_at=NOW - timedelta(days=10)),
    ]
    session.commit()
    return org, alice, bob, (bread, cake, pie), p


def test_purchases_list_is_newest_first_with_masked_emails(cli, session) -> None:
    *_, p = _catalog(session)
    result = cli("purchases", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split("\t") == [
        "created", "id", "status", "customer", "title", "org", "paid",
    ]  # fmt: skip
    rows = _rows(result)
    assert [r[1] for r in rows] == [str(x.id) for x in p]
    assert [r[2] for r in rows] == ["completed", "refunded", "pending", "failed", "completed"]
    assert {r[3] for r in rows} == {"a***@example.com", "b***@example.com"}
    assert "alice@" not in result.output and "bob@" not in result.output
    assert rows[0][6] == "$9.99" and rows[0][5] == "bakery"


def test_purchases_list_filters(cli, session) -> None:
    org, alice, bob, (bread, cake, pie), p = _catalog(session)

    def ids(*args: str) -> list[str]:
        result = cli("purchases", "list", *args, "--json")
        assert result.exit_code == 0, result.output
        return [item["id"] for item in json.loads(result.stdout)["items"]]

    assert ids("--status", "refunded") == [str(p[1].id)]
    assert ids("--status", "completed") == [str(p[0].id), str(p[4].id)]
    assert ids("--status", "pending") == [str(p[2].id)]
    assert ids("--content", str(cake.id)) == [str(p[2].id), str(p[3].id)]
    assert ids("--since", "7d") == [str(x.id) for x in p[:4]]
    assert ids("--since", "2h", "--org", "bakery") == [str(p[0].id)]
    assert ids("--customer", "bob@example.com", "--status", "completed") == [str(p[4].id)]


def test_filtering_by_customer_email_shows_the_address_the_operator_typed(cli, session) -> None:
    _catalog(session)
    data = json.loads(cli("purchases", "list", "--customer", "alice@example.com", "--json").stdout)
    assert {item["customer"] for item in data["items"]} == {"alice@example.com"}
    by_id = cli("purchases", "list", "--json")
    assert "alice@example.com" not in by_id.stdout


def test_purchases_list_pages_with_a_cursor(cli, session) -> None:
    *_, p = _catalog(session)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        args = ["purchases", "list", "--limit", "2", "--json"] + (["--cursor", cursor] if cursor else [])
        page = json.loads(cli(*args).stdout)
        pages += 1
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == [str(x.id) for x in p]
    table = cli("purchases", "list", "--limit", "2")
    assert len(_rows(table)) == 2 and "--cursor" in table.stderr


def test_paging_is_stable_when_rows_share_a_timestamp(cli, session) -> None:
    org = make_org(session)
    customer = make_user(session)
    same = [make_purchase(session, customer, make_content(session, org), created_at=NOW) for _ in range(5)]
    session.commit()
    first = json.loads(cli("purchases", "list", "--limit", "3", "--json").stdout)
    second = json.loads(
        cli("purchases", "list", "--limit", "3", "--cursor", first["next_cursor"], "--json").stdout
    )
    ids = [i["id"] for i in first["items"] + second["items"]]
    assert sorted(ids) == sorted(str(x.id) for x in same) and len(set(ids)) == 5
    assert second["next_cursor"] is None


def test_bad_list_options_are_usage_errors(cli, session) -> None:
    for args, message in [
        (["--status", "lost"], "Unknown status 'lost'"),
        (["--since", "yesterday"], "Invalid duration"),
        (["--limit", "0"], "The page size must be between 1 and 500 (--limit)."),
        (["--cursor", "not-a-cursor"], "Invalid cursor"),
    ]:
        result = cli("purchases", "list", *args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
    unknown = cli("purchases", "list", "--customer", "ghost@example.com")
    assert unknown.exit_code == 3
    no_content = cli("purchases", "list", "--content", "abc")
    assert no_content.exit_code == 3 and "Content abc not found." in no_content.stderr


def test_purchases_show_one_purchase(cli, session) -> None:
    org, alice, bob, (bread, cake, pie), p = _catalog(session)
    result = cli("purchases", "show", str(p[1].id))
    assert result.exit_code == 0, result.output
    assert "status:        refunded" in result.stdout and "access:        no" in result.stdout
    assert "b***@example.com" in result.stdout and "bob@" not in result.stdout
    assert '"Bread"' in result.stdout and "refunded:" in result.stdout
    data = json.loads(cli("purchases", "show", str(p[0].id), "--json").stdout)
    assert data["status"] == "completed" and data["has_access"] is True
    assert data["price"] == "$9.99" and data["customer"] == "a***@example.com"
    assert cli("purchases", "show", "00000000-0000-0000-0000-000000000000").exit_code == 3
    assert cli("purchases", "show", "nope").exit_code == 2


def test_users_list_filters_by_role_and_search_with_masked_customer_emails(cli, session) -> None:
    owner = make_owner(session, email="owner@codex.example", name="Olga Owner", created_at=NOW)
    ann = make_user(session, email="ann@example.com", name="Ann Baker", created_at=NOW - timedelta(days=1))
    make_user(session, email="ben@example.com", name="Ben Brewer", created_at=NOW - timedelta(days=2))
    make_purchase(session, ann, make_content(session, make_org(session)))
    session.commit()

    everyone = cli("users", "list")
    assert everyone.exit_code == 0, everyone.output
    rows = _rows(everyone)
    assert [r[3] for r in rows] == ["Olga Owner", "Ann Baker", "Ben Brewer"]
    assert [r[2] for r in rows] == ["owner@codex.example", "a***@example.com", "b***@example.com"]
    assert rows[1][6] == "1"

    owners = json.loads(cli("users", "list", "--role", "platform_owner", "--json").stdout)
    assert [u["id"] for u in owners["items"]] == [str(owner.id)]
    found = json.loads(cli("users", "list", "--search", "BAKER", "--json").stdout)
    assert [u["name"] for u in found["items"]] == ["Ann Baker"]
    by_email = json.loads(cli("users", "list", "--search", "ben@", "--json").stdout)
    assert [u["email"] for u in by_email["items"]] == ["b***@example.com"]
    assert json.loads(cli("users", "list", "--search", "%", "--json").stdout)["items"] == []
    assert cli("users", "list", "--role", "admin").exit_code == 2


def test_users_list_pages(cli, session) -> None:
    users = [make_user(session, created_at=NOW - timedelta(minutes=i)) for i in range(5)]
    session.commit()
    first = json.loads(cli("users", "list", "--limit", "3", "--json").stdout)
    rest = json.loads(cli("users", "list", "--limit", "3", "--cursor", first["next_cursor"], "--json").stdout)
    assert [u["id"] for u in first["items"] + rest["items"]] == [str(u.id) for u in users]
    assert rest["next_cursor"] is None


def test_users_show_by_email_and_by_id(cli, session) -> None:
    org, alice, bob, (bread, cake, pie), p = _catalog(session)
    make_membership(session, org, bob)
    session.commit()
    result = cli("users", "show", "bob@example.com")
    assert result.exit_code == 0, result.output
    assert "bob@example.com" in result.stdout
    assert "memberships:   bakery (owner)" in result.stdout
    assert "purchases:     1 completed, 1 failed, 1 refunded" in result.stdout
    assert "spent:         $9.99" in result.stdout
    data = json.loads(cli("users", "show", str(bob.id), "--json").stdout)
    assert data["email"] == "b***@example.com"
    assert data["purchases"] == {"pending": 0, "completed": 1, "failed": 1, "refunded": 1}
    missing = cli("users", "show", "ghost@example.com")
    assert missing.exit_code == 3 and "User ghost@example.com not found." in missing.stderr
