"""Stripe requests and wall time of `reconcile_purchases` vs the roadmap's one-retrieve-per-purchase approach.

Seeds N pending purchases (a third paid, a third expired, a third still open) in a scratch PostgreSQL and
the matching Checkout Sessions in the Stripe stand-in, then reconciles two identical copies of the database:
once with codex's list-and-match approach, once retrieving each pending purchase's session.

Usage: python scripts/bench_reconcile.py [--purchases 10000]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.bootstrap import Container  # noqa: E402
from services.payments import purchases  # noqa: E402
from services.payments.reconcile import reconcile_purchases  # noqa: E402
from services.settings import Settings  # noqa: E402
from tests.pg import TestPostgres  # noqa: E402
from tests.standins.stripe_server import DEFAULT_API_KEY, StripeStandin  # noqa: E402


def seed(pg: TestPostgres, standin: StripeStandin, n: int) -> str:
    """A migrated database with n pending purchases, plus their sessions in the stand-in."""
    import psycopg

    name = pg.clone()
    created = datetime.now(UTC) - timedelta(hours=2)
    with psycopg.connect(pg.url(name)) as conn:
        org = conn.execute(
            "INSERT INTO organizations (name, slug) VALUES ('Bench', 'bench') RETURNING id"
        ).fetchone()[0]
        media = conn.execute(
            "INSERT INTO media_items (organization_id, type, status, r2_key, filename, mime_type, "
            "file_size_bytes) VALUES (%s, 'video', 'ready', 'k', 'f.mp4', 'video/mp4', 1) RETURNING id",
            (org,),
        ).fetchone()[0]
        content = conn.execute(
            "INSERT INTO content (organization_id, media_item_id, title, slug, description, price_cents, "
            "status) VALUES (%s, %s, 'Bench film', 'bench-film', 'A bench film.', 999, 'published') "
            "RETURNING id",
            (org, media),
        ).fetchone()[0]
        rows = conn.execute(
            "WITH u AS (INSERT INTO users (email, name) SELECT 'buyer' || g || '@example.com', 'Buyer ' || g "
            "FROM generate_series(1, %s) g RETURNING id) "
            "INSERT INTO content_purchases (customer_id, content_id, organization_id, price_paid_cents, "
            "status, created_at) SELECT u.id, %s, %s, 999, 'pending', %s FROM u RETURNING id, customer_id",
            (n, content, org, created),
        ).fetchall()
        updates = []
        for i, (purchase_id, customer_id) in enumerate(rows):
            session = standin.create_session(
                amount_total=999,
                metadata={
                    "purchaseId": str(purchase_id),
                    "customerId": str(customer_id),
                    "contentId": str(content),
                    "organizationId": str(org),
                },
                customer_email=f"buyer{i}@example.com",
                created=created.timestamp(),
            )
            if i % 3 == 0:
                standin.mark_paid(session["id"], emit_event=False)
            elif i % 3 == 1:
                standin.mark_expired(session["id"], emit_event=False)
            updates.append((session["id"], purchase_id))
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE content_purchases SET stripe_checkout_session_id = %s WHERE id = %s", updates
            )
    return name


def per_purchase(container: Container) -> dict[str, int]:
    """The roadmap's approach: one retrieve per pending purchase, then the same fix code."""
    from sqlalchemy import select

    from services.core.models import ContentPurchase, PurchaseStatus

    fixed = {"completed": 0, "failed": 0}
    with container.uow() as uow:
        pending = uow.session.execute(
            select(ContentPurchase.id, ContentPurchase.stripe_checkout_session_id).where(
                ContentPurchase.status == PurchaseStatus.pending
            )
        ).all()
    for _purchase_id, session_id in pending:
        stripe_session = container.stripe.retrieve_checkout_session(session_id)
        if stripe_session.get("payment_status") == "paid":
            apply = purchases.complete_purchase
        elif stripe_session.get("status") == "expired":
            apply = purchases.fail_purchase
        else:
            continue
        with container.uow() as uow:
            outcome = apply(uow.session, stripe_session)
            uow.commit()
        if outcome.changed:
            fixed[outcome.action] += 1
            if outcome.action == "completed":
                purchases.send_receipt(container, outcome)
    return fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--purchases", type=int, default=10_000)
    args = parser.parse_args()
    n = args.purchases
    with tempfile.TemporaryDirectory() as tmp, StripeStandin(api_key=DEFAULT_API_KEY) as standin:
        pg = TestPostgres(Path(tmp))
        pg.create_template()
        t0 = time.perf_counter()
        ours_db = seed(pg, standin, n)
        print(f"seeded {n} pending purchases and sessions in {time.perf_counter() - t0:.1f} s")
        import psycopg

        peer_db = f"peer_{ours_db}"  # an identical copy for the per-purchase run
        with psycopg.connect(pg.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{peer_db}" TEMPLATE "{ours_db}"')

        def container_for(db: str, home: str) -> Container:
            return Container(
                Settings(
                    codex_home=Path(tmp) / home,
                    database_url=pg.sqlalchemy_url(db),
                    stripe_secret_key=DEFAULT_API_KEY,
                    stripe_api_base=standin.url,
                )
            )

        ours = container_for(ours_db, "ours")
        standin.clear_log()
        start = time.perf_counter()
        report = reconcile_purchases(ours, since=timedelta(days=7), min_age=timedelta(minutes=15))
        ours_s = time.perf_counter() - start
        ours_requests = len(standin.requests)
        ours.close()

        peer = container_for(peer_db, "peer")
        standin.clear_log()
        start = time.perf_counter()
        peer_fixed = per_purchase(peer)
        peer_s = time.perf_counter() - start
        peer_requests = len(standin.requests)
        peer.close()

    budget = math.ceil(n / 100) + 10
    fixed = report.fixed_counts
    print(f"codex reconcile:      {ours_requests:6d} Stripe requests, {ours_s:6.1f} s, fixed {fixed}")
    print(f"one retrieve each:    {peer_requests:6d} Stripe requests, {peer_s:6.1f} s, fixed {peer_fixed}")
    print(f"request budget ceil(N/100)+10 = {budget}: {'met' if ours_requests <= budget else 'MISSED'}")
    print(
        f"ratio (per-purchase / codex): {peer_requests / max(ours_requests, 1):.0f}x fewer requests "
        f"(target >= 20x); wall time {peer_s / ours_s:.2f}x"
    )


if __name__ == "__main__":
    main()
