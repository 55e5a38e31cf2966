"""`codex checkout create --content` takes a slug like the content commands do (`--org` when needed)."""

from __future__ import annotations

from sqlalchemy import select

from services.core.models import ContentPurchase, Organization
from tests.factories import make_content, make_org


def test_content_is_named_by_slug_and_an_ambiguous_slug_needs_the_org(cli, session, shop) -> None:
    org = session.get(Organization, shop.free.organization_id)
    by_slug = cli("checkout", "create", "--customer", "jane@example.com", "--content", shop.free.slug)
    assert by_slug.exit_code == 0, by_slug.output
    assert "Free access granted: Free Sampler" in by_slug.stdout
    (row,) = session.scalars(select(ContentPurchase)).all()
    assert row.content_id == shop.free.id and row.organization_id == org.id

    other = make_org(session, slug="other-studio")
    make_content(session, other, title="Also Free", price_cents=0, slug="shared-slug")
    mine = make_content(session, org, title="Mine Free", price_cents=0, slug="shared-slug")
    session.commit()
    ambiguous = cli("checkout", "create", "--customer", "jane@example.com", "--content", "shared-slug")
    assert ambiguous.exit_code == 2
    assert "Content slug 'shared-slug' is used by more than one organization" in ambiguous.stderr
    assert ambiguous.stderr.strip().endswith("name the organization (--org).")
    chosen = cli(
        "checkout", "create", "--customer", "jane@example.com", "--content", "shared-slug",
        "--org", org.slug,
    )  # fmt: skip
    assert chosen.exit_code == 0, chosen.output
    assert {r.content_id for r in session.scalars(select(ContentPurchase))} == {shop.free.id, mine.id}
    missing = cli("checkout", "create", "--customer", "jane@example.com", "--content", "no-such-talk")
    assert missing.exit_code == 3 and "Content no-such-talk not found." in missing.stderr
