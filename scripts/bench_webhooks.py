"""Throughput and latency of `codex webhook listen` on PostgreSQL, then an exactly-once check.

Signed `checkout.session.completed` events for distinct pending purchases (plus deliberate duplicates
sent right behind their originals) go to a listener subprocess from N concurrent keep-alive clients
over loopback. The peer, measured in the same run with the same clients, is a trivial stdlib HTTP
server that answers 200 without any database work: the ceiling of this machine and client.

Usage: python scripts/bench_webhooks.py [--events 3000] [--clients 50] [--duplicate-every 10]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import queue
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "whsec_bench_0123456789abcdef"
PATH = "/webhooks/stripe/payment"
PRICE = 999
CODEX_ENV = (
    "DATABASE_URL",
    "CODEX_HOME",
    "R2_ACCOUNT_ID",
    "R2_ENDPOINT_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_API_BASE",
    "STRIPE_WEBHOOK_SECRET_PAYMENT",
    "RESEND_API_KEY",
    "RESEND_API_URL",
)

TRIVIAL_SERVER = textwrap.dedent(
    """
    import json, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"received": True, "outcome": "processed"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(json.dumps({"listening": f"http://127.0.0.1:{server.server_address[1]}"}), flush=True)
    server.serve_forever()
    """
)


def sign(payload: bytes) -> str:
    t = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


@dataclass
class Run:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(round(p / 100 * (len(data) - 1))))] * 1000 if data else 0.0

    def line(self) -> str:
        worst = max(self.latencies, default=0.0) * 1000
        return (
            f"{self.name:<34} {len(self.latencies):6d} req in {self.seconds:6.2f} s {self.rate:7.1f}/s  "
            f"p50 {self.pct(50):6.1f} ms  p99 {self.pct(99):6.1f} ms  max {worst:6.1f} ms"
        )


def fire(name: str, base_url: str, bodies: list[bytes], clients: int) -> Run:
    """Send every body once from `clients` keep-alive connections; record status, outcome, latency."""
    host, port = base_url.removeprefix("http://").split(":")
    jobs: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    for body in bodies:
        jobs.put(body)
    for _ in range(clients):
        jobs.put(None)
    run = Run(name)
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        mine: list[tuple[float, int, str]] = []
        start_gate.wait()
        while (body := jobs.get()) is not None:
            headers = {"Content-Type": "application/json", "Stripe-Signature": sign(body)}
            t0 = time.perf_counter()
            try:
                conn.request("POST", PATH, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                with lock:
                    run.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - t0
            outcome = json.loads(data).get("outcome", "-") if status == 200 else "-"
            mine.append((elapsed, status, outcome))
        conn.close()
        with lock:
            for elapsed, status, outcome in mine:
                run.latencies.append(elapsed)
                run.statuses[status] = run.statuses.get(status, 0) + 1
                run.outcomes[outcome] = run.outcomes.get(outcome, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    run.seconds = time.perf_counter() - t0
    return run


def start_process(
    cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path
) -> tuple[subprocess.Popen, str]:
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=log)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        proc.wait()
        raise SystemExit(f"{cmd[2:5]} did not start:\n{log_path.read_text()[-2000:]}")
    return proc, json.loads(line)["listening"]


def stop_process(proc: subprocess.Popen) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def seed(url: str, count: int) -> list[dict]:
    """One organization and content, `count` customers each with a pending purchase; returns sessions."""
    from sqlalchemy import func, insert, select

    from services import models as m
    from services.db import make_engine
    from services.migrations import migrate

    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        org_id = conn.execute(
            insert(m.Organization).values(name="Bench", slug="bench").returning(m.Organization.id)
        ).scalar_one()
        media_id = conn.execute(
            insert(m.MediaItem)
            .values(
                organization_id=org_id,
                type=m.MediaType.video,
                status=m.MediaStatus.ready,
                r2_key=f"{org_id}/originals/bench/original.mp4",
                filename="bench.mp4",
                mime_type="video/mp4",
                file_size_bytes=1024,
            )
            .returning(m.MediaItem.id)
        ).scalar_one()
        content_id = conn.execute(
            insert(m.Content)
            .values(
                organization_id=org_id,
                media_item_id=media_id,
                title="Benchmark video",
                slug="benchmark-video",
                description="A video bought many times.",
                price_cents=PRICE,
                status=m.ContentStatus.published,
                published_at=func.now(),
            )
            .returning(m.Content.id)
        ).scalar_one()
        tag = uuid.uuid4().hex[:8]
        conn.execute(
            insert(m.User),
            [{"email": f"buyer{i}-{tag}@example.com", "name": f"Buyer {i}"} for i in range(count)],
        )
        users = conn.execute(select(m.User.id, m.User.email).order_by(m.User.email)).all()
        rows = [
            {
                "customer_id": uid,
                "content_id": content_id,
                "organization_id": org_id,
                "price_paid_cents": PRICE,
                "currency": "usd",
                "status": m.PurchaseStatus.pending,
                "stripe_checkout_session_id": f"cs_bench_{uuid.uuid4().hex}",
            }
            for uid, _ in users
        ]
        ids = conn.execute(insert(m.ContentPurchase).returning(m.ContentPurchase.id), rows).scalars().all()
    engine.dispose()
    sessions = []
    for purchase_id, row, (_, email) in zip(ids, rows, users, strict=True):
        sessions.append(
            {
                "id": row["stripe_checkout_session_id"],
                "object": "checkout.session",
                "mode": "payment",
                "status": "complete",
                "payment_status": "paid",
                "amount_total": PRICE,
                "amount_subtotal": PRICE,
                "currency": "usd",
                "customer_email": email,
                "customer_details": {"email": email, "name": None},
                "payment_intent": f"pi_bench_{uuid.uuid4().hex[:20]}",
                "metadata": {
                    "purchaseId": str(purchase_id),
                    "customerId": str(row["customer_id"]),
                    "contentId": str(content_id),
                    "organizationId": str(org_id),
                },
            }
        )
    return sessions


def event_for(session: dict) -> bytes:
    event = {
        "id": f"evt_bench_{uuid.uuid4().hex}",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": session},
    }
    return json.dumps(event).encode()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000, help="distinct purchases/events")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--duplicate-every", type=int, default=10, help="send every Nth event twice (0: none)"
    )
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp_dir:
        tmp = Path(tmp_dir)
        server = pgserver.get_server(tmp / "pgdata", cleanup_mode="delete")
        try:
            server.psql("CREATE DATABASE bench;")
            url = server.get_uri().replace("/postgres?", "/bench?", 1)
            t0 = time.perf_counter()
            sessions = seed(url, args.warmup + args.events)
            print(f"seeded {len(sessions)} pending purchases in {time.perf_counter() - t0:.1f} s")
            warmup, measured = sessions[: args.warmup], sessions[args.warmup :]

            bodies: list[bytes] = []
            duplicates = 0
            for i, session in enumerate(measured):
                body = event_for(session)
                bodies.append(body)
                if args.duplicate_every and i % args.duplicate_every == 0:
                    bodies.append(body)  # right behind its original: often handled at the same moment
                    duplicates += 1

            env = {k: v for k, v in os.environ.items() if k not in CODEX_ENV}
            home = tmp / "home"
            env.update(DATABASE_URL=url, CODEX_HOME=str(home), STRIPE_WEBHOOK_SECRET_PAYMENT=SECRET)

            peer, peer_url = start_process([sys.executable, "-c", TRIVIAL_SERVER], env, tmp, tmp / "peer.log")
            try:
                fire("warm-up peer", peer_url, [event_for(s) for s in warmup], args.clients)
                peer_run = fire("peer: stdlib server, 200, no DB", peer_url, bodies, args.clients)
            finally:
                stop_process(peer)

            listener, listener_url = start_process(
                [sys.executable, "-m", "codex_cli", "webhook", "listen", "--port", "0", "--json"],
                env,
                tmp,
                tmp / "listener.log",
            )
            try:
                warm = fire("warm-up listener", listener_url, [event_for(s) for s in warmup], args.clients)
                if warm.statuses.get(200) != len(warmup):
                    print(f"warm-up answers: {warm.statuses} {warm.outcomes} {warm.errors[:3]}")
                for path in (home / "outbox").glob("*.eml"):
                    path.unlink()
                run = fire("codex webhook listen (PostgreSQL)", listener_url, bodies, args.clients)
            finally:
                code = stop_process(listener)
            print(f"{len(measured)} events + {duplicates} duplicates sent on purpose; {args.clients} clients")
            print(peer_run.line())
            print(run.line())
            print(
                f"ratio listener/peer: throughput {run.rate / peer_run.rate:.2f}x, "
                f"p99 {run.pct(99) / max(peer_run.pct(99), 1e-9):.1f}x"
            )
            print(
                f"targets: >= 300 events/s {'met' if run.rate >= 300 else 'MISSED'}; "
                f"p99 < 100 ms {'met' if run.pct(99) < 100 else 'MISSED'}; listener exit code {code}"
            )
            # Warm-up purchases completed too; count only what the measured run must have done.
            problems = verify_measured(url, home, measured, warmup, run, duplicates)
            if problems:
                print("EXACTLY-ONCE FAILED: " + "; ".join(problems))
                print((tmp / "listener.log").read_text()[-3000:])
                raise SystemExit(1)
            print("exactly-once: OK (zero lost, zero applied twice, one email per purchase)")
        finally:
            server.cleanup()


def verify_measured(
    url: str, home: Path, measured: list[dict], warmup: list[dict], run: Run, duplicates: int
) -> list[str]:
    problems = verify_all(url, len(measured) + len(warmup))
    emails = len(list((home / "outbox").glob("*.eml")))
    print(
        f"verify: answers {dict(sorted(run.statuses.items()))} {dict(sorted(run.outcomes.items()))}; "
        f"transport errors {len(run.errors)}; receipt emails in the measured run {emails}"
    )
    if emails != len(measured):
        problems.append(f"{emails} emails for {len(measured)} purchases")
    if run.statuses.get(200, 0) != len(measured) + duplicates or run.errors:
        problems.append(f"not every delivery answered 200 ({run.statuses}, {len(run.errors)} errors)")
    if run.outcomes.get("processed", 0) != len(measured) or run.outcomes.get("duplicate", 0) != duplicates:
        problems.append(f"outcomes {run.outcomes}: want {len(measured)} processed, {duplicates} duplicate")
    return problems


def verify_all(url: str, total: int) -> list[str]:
    """Database side: every purchase completed, one processed event row each, each applied once."""
    from sqlalchemy import func, select

    from services import models as m
    from services.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:

        def count(*where):  # type: ignore[no-untyped-def]
            return conn.scalar(select(func.count()).select_from(where[0].table).where(*where))

        completed = count(m.ContentPurchase.status == m.PurchaseStatus.completed)
        processed = count(m.StripeEvent.status == m.StripeEventStatus.processed)
        other = count(m.StripeEvent.status != m.StripeEventStatus.processed)
        twice = count(m.StripeEvent.attempts != 1)
    engine.dispose()
    print(
        f"verify: purchases completed {completed}/{total}; event rows processed {processed}, other {other}, "
        f"applied more than once {twice}"
    )
    problems = []
    if completed != total:
        problems.append(f"{total - completed} purchase(s) not completed (lost)")
    if processed != total or other:
        problems.append(f"event rows: {processed} processed, {other} other (want {total}, 0)")
    if twice:
        problems.append(f"{twice} event(s) applied more than once")
    return problems


if __name__ == "__main__":
    main()
