"""The kill -9 burst: receipts survive a listener crash, and none is sent twice.

A burst of --events signed `checkout.session.completed` events (distinct purchases, 50 clients) goes
to `codex webhook listen` (its own PostgreSQL, receipts through Resend's API: the Resend stand-in of
tests/standins, which honours Idempotency-Key like Resend). When --kill-at of the purchases are
completed, the listener gets SIGKILL. It is restarted, every event is sent again (Stripe redelivers
what it had no 2xx for), the listener is stopped and `codex email drain` runs, as cron would.
Then: purchases completed, receipts accepted by "Resend", recipients with more than one receipt.

Usage: python scripts/bench_outbox_crash.py [--events 400] [--kill-at 0.5]
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_webhooks as bw  # noqa: E402 - the same seeding, signing and clients as the throughput bench

from tests.standins.resend_server import ResendStandIn  # noqa: E402

RESEND_KEY = "re_bench_0123456789abcdef"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of purchases completed at the kill")
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()

    from sqlalchemy import func, select, text

    from services.adapters.db import make_engine
    from services.core import models as m

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    resend = ResendStandIn().start()
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp_dir:
        tmp = Path(tmp_dir)
        tmp.chmod(0o755)  # pgserver runs PostgreSQL as its own user when we are root
        server = pgserver.get_server(tmp / "pgdata", cleanup_mode="delete")
        try:
            server.psql("CREATE DATABASE bench;")
            url = server.get_uri().replace("/postgres?", "/bench?", 1)
            sessions = bw.seed(url, args.events)
            bodies = [bw.event_for(s) for s in sessions]
            env = {k: v for k, v in os.environ.items() if k not in bw.CODEX_ENV}
            env.update(
                DATABASE_URL=url,
                CODEX_HOME=str(tmp / "home"),
                STRIPE_WEBHOOK_SECRET_PAYMENT=bw.SECRET,
                RESEND_API_KEY=RESEND_KEY,
                RESEND_API_URL=resend.url,
            )
            engine = make_engine(url)

            def completed() -> int:
                with engine.connect() as conn:
                    return conn.scalar(
                        select(func.count())
                        .select_from(m.ContentPurchase)
                        .where(m.ContentPurchase.status == m.PurchaseStatus.completed)
                    )

            listen = [sys.executable, "-m", "codex_cli", "webhook", "listen", "--port", "0", "--json"]
            listener, listener_url = bw.start_process(listen, env, tmp, tmp / "listener-1.log")
            target = int(args.events * args.kill_at)
            at_kill: dict[str, int] = {}

            def killer() -> None:
                while completed() < target:
                    time.sleep(0.01)
                listener.send_signal(signal.SIGKILL)
                at_kill["completed"] = completed()
                at_kill["receipts"] = len(resend.emails)

            watcher = threading.Thread(target=killer)
            watcher.start()
            first = bw.fire("burst (killed mid-way)", listener_url, bodies, args.clients)
            watcher.join()
            listener.wait()
            with engine.connect() as conn:
                pending = conn.scalar(text("SELECT count(*) FROM email_outbox WHERE status = 'pending'"))
            print(
                f"burst of {args.events}: SIGKILL at {at_kill['completed']} purchases completed, "
                f"{at_kill['receipts']} receipts sent; answered {dict(first.statuses)}, "
                f"{len(first.errors)} cut off; {pending} receipts committed but not sent yet"
            )

            listener, listener_url = bw.start_process(listen, env, tmp, tmp / "listener-2.log")
            again = bw.fire("every event sent again", listener_url, bodies, args.clients)
            code, _ = bw.stop_process(listener)
            print(
                f"restart + resend all {args.events}: answered {dict(again.statuses)} "
                f"{dict(again.outcomes)}; listener exit {code} after SIGTERM"
            )
            drain = bw.email_drain(env, tmp)
            print(f"codex email drain: exit {drain.returncode}: {drain.stdout.strip().splitlines()[-1:]}")

            done = completed()
            receipts = [e["to"][0] for e in resend.emails]
            per = collections.Counter(receipts)
            duplicates = sum(n - 1 for n in per.values())
            replays = sum(1 for r in resend.requests if r.replayed)
            with engine.connect() as conn:
                statuses = dict(
                    conn.execute(text("SELECT status, count(*) FROM email_outbox GROUP BY status")).all()
                )
            engine.dispose()
            print(
                f"result: purchases completed {done}/{args.events}; receipts sent {len(receipts)} to "
                f"{len(per)} customers; duplicates {duplicates}; resends answered from Resend's "
                f"idempotency cache {replays}; outbox {statuses}"
            )
            ok = done == args.events and len(receipts) == done and duplicates == 0 and len(per) == done
            print("exactly one receipt per purchase: " + ("OK" if ok else "FAILED"))
            if not ok:
                raise SystemExit(1)
        finally:
            server.cleanup()
            resend.stop()


if __name__ == "__main__":
    main()
