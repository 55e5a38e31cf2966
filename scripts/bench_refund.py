"""Wall time of one whole-process `codex refund` against the Stripe stand-in and a real PostgreSQL.

Each run is `python -m codex_cli refund ID --reason ... --yes` in a fresh process (start-up, imports,
settings, database connection, row lock, Stripe refund over HTTP, commit, the email to the outbox),
measured against `python -m codex_cli --help` in the same run as the peer. The roadmap asks for < 2 s.

Usage: python scripts/bench_refund.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.adapters.db import make_engine, make_session_factory  # noqa: E402
from services.core import models as m  # noqa: E402
from tests.factories import make_content, make_org, make_owner, make_purchase, make_user  # noqa: E402
from tests.pg import TestPostgres  # noqa: E402
from tests.standins.stripe_server import DEFAULT_API_KEY, StripeStandin  # noqa: E402

OPERATOR = "bench-ops@codex.test"
CODEX = [sys.executable, "-m", "codex_cli"]


def _time(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=env["CODEX_HOME"])
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:])} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def _purchases(session_factory: object, standin: StripeStandin, count: int) -> list[str]:
    """`count` completed purchases of distinct content, each paid through the stand-in."""
    with session_factory() as session:  # type: ignore[operator]
        make_owner(session, email=OPERATOR)
        customer = make_user(session, email="bench.customer@example.com", name="Bench Customer")
        org = make_org(session)
        ids = []
        for _ in range(count):
            content = make_content(session, org, price_cents=1999)
            checkout = standin.create_session(amount_total=1999, customer_email=customer.email)
            paid = standin.mark_paid(checkout["id"])
            purchase = make_purchase(
                session,
                customer,
                content,
                status=m.PurchaseStatus.completed,
                purchased_at=datetime.now(UTC) - timedelta(days=2),
                stripe_checkout_session_id=checkout["id"],
                stripe_payment_intent_id=paid["payment_intent"],
            )
            ids.append(str(purchase.id))
        session.commit()
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, StripeStandin(DEFAULT_API_KEY) as standin:
        os.chmod(tmp, 0o755)  # run as root, pgserver starts postgres as another user that must get in
        (Path(tmp) / "pg").mkdir()
        pg = TestPostgres(Path(tmp) / "pg")
        pg.create_template()
        db_url = pg.sqlalchemy_url(pg.clone())
        engine = make_engine(db_url)
        ids = _purchases(make_session_factory(engine), standin, args.runs + 1)
        engine.dispose()

        home = Path(tmp) / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "RESEND_", "R2_"))}
        env.update(
            CODEX_HOME=str(home),
            DATABASE_URL=db_url,
            STRIPE_SECRET_KEY=DEFAULT_API_KEY,
            STRIPE_API_BASE=standin.url,
            CODEX_OPERATOR_EMAIL=OPERATOR,
        )
        reason = ["--reason", "Benchmark refund: customer request", "--yes"]

        _time([*CODEX, "refund", ids.pop(), *reason], env)  # warm the OS caches once, not counted
        help_times, dry_times, refund_times = [], [], []
        for purchase_id in ids:  # interleaved, so load on the shared machine hits all three alike
            help_times.append(_time([*CODEX, "--help"], env))
            dry_times.append(_time([*CODEX, "refund", purchase_id, *reason[:2], "--dry-run"], env))
            refund_times.append(_time([*CODEX, "refund", purchase_id, *reason], env))

        refunds = len(standin.refunds())
        outbox = len(list((home / "outbox").glob("*.eml")))
        if refunds != args.runs + 1 or outbox != args.runs + 1:
            raise SystemExit(f"expected {args.runs + 1} refunds and emails, got {refunds} and {outbox}")

        h, d, r = (statistics.median(t) for t in (help_times, dry_times, refund_times))
        n, worst = args.runs, max(refund_times) * 1000
        rows = [
            ("codex --help (peer)", h, ""),
            ("codex refund --dry-run", d, ""),
            ("codex refund --yes (Stripe, email)", r, f", max {worst:.0f} ms"),
        ]
        for label, median, extra in rows:
            print(f"{label:35} median {median * 1000:7.1f} ms over {n} runs{extra}")
        print(f"ratio refund / --help: {r / h:.2f}x; refund beyond start-up: {(r - h) * 1000:.1f} ms")
        print(f"roadmap target: one refund < 2 s -> {'met' if r < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
