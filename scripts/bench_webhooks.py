"""Throughput and latency of `codex webhook listen` on PostgreSQL, slow-client resistance, exactly-once.

Signed `checkout.session.completed` events for distinct pending purchases (plus deliberate duplicates
sent right behind their originals, so they often race) go over loopback to a listener subprocess
backed by its own temporary PostgreSQL, from 50 keep-alive clients:
- saturation: every client sends its next event as soon as it has an answer (closed loop): the most
  events/s the listener sustains; with 50 clients always waiting, latency is ~50 / throughput;
- paced: the same 50 clients together offer --rate events/s (open loop, 150 by default), then half
  the measured saturation rate; latency counts from each event's scheduled send time, so falling
  behind shows up in p99;
- under attack: --slow-clients connections (1,000) trickle a request head or a body, one piece every
  2 s, reconnecting whenever the listener closes them, while the clients offer --slow-rate events/s
  (half the saturation rate by default: compare its p99 with the half-load run's); events not
  answered 200 then are re-sent afterwards (as Stripe retries) and counted.
Peers measured in the same run with the same clients: a trivial stdlib HTTP server that answers 200
without any work (the ceiling of this machine and client); with --servers, bare uvicorn (httptools,
h11) and granian serving a trivial ASGI app, and granian serving the listener's own ASGI app (the
server choice); with --before DIR, the listener of another checkout (e.g. the previous release).
Afterwards: every purchase completed exactly once, one event row each, one receipt email each, every
duplicate answered `duplicate`, nothing lost.

The machine may be shared: compare the ratios within one run, not absolute figures across runs.

Usage: python scripts/bench_webhooks.py [--events 2000] [--clients 50] [--rate 150] [--workers 1,2]
       [--slow-clients 1000] [--before DIR] [--servers]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import queue
import socket
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

    ThreadingHTTPServer.request_queue_size = 128  # as the listener's, so 50 connects never overflow
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(json.dumps({"listening": f"http://127.0.0.1:{server.server_address[1]}"}), flush=True)
    server.serve_forever()
    """
)


ASGI_PEER = textwrap.dedent(
    """
    import json, socket, sys
    import uvicorn

    BODY = json.dumps({"received": True, "outcome": "processed"}).encode()
    HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})

    if __name__ == "__main__":
        sock = socket.create_server(("127.0.0.1", 0), backlog=2048)
        print(json.dumps({"listening": f"http://127.0.0.1:{sock.getsockname()[1]}"}), flush=True)
        config = uvicorn.Config(app, http=sys.argv[1], lifespan="off", log_level="warning", access_log=False)
        uvicorn.Server(config).run(sockets=[sock])
    """
)

# granian imports its app by name: the trivial one above, or the listener's WebhookApp on the bench DB.
GRANIAN_APPS = textwrap.dedent(
    """
    from bench_asgi_peer import app as trivial

    def webhook_app():
        from services.adapters.http_listener import WebhookApp
        from services.bootstrap import Container
        from services.settings import Settings

        container = Container(Settings.load())
        container.notifications.cache_overrides(60.0)
        return WebhookApp(container)
    """
)

SLOW_CLIENTS = textwrap.dedent(
    """
    # Keeps N connections trickling a request (half a head, half a body), one piece each every
    # INTERVAL s, and reopens any the listener closes. Prints what it saw on SIGTERM.
    import json, selectors, signal, socket, sys, time

    host, port, count, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    HEAD = b"POST /webhooks/stripe/payment HTTP/1.1\\r\\nHost: x\\r\\n"
    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "closed_by_listener": 0, "answers": {}, "connect_errors": 0}
    conns = {}

    def open_one(kind):
        try:
            s = socket.create_connection((host, port), timeout=5)
        except OSError:
            stats["connect_errors"] += 1
            return
        s.setblocking(False)
        s.send(HEAD if kind == "head" else HEAD + b"Content-Length: 100000\\r\\n\\r\\n{")
        conns[s] = kind
        sel.register(s, selectors.EVENT_READ)
        stats["opened"] += 1

    def drop(s):
        sel.unregister(s)
        kind = conns.pop(s)
        s.close()
        stats["closed_by_listener"] += 1
        open_one(kind)

    running = True
    def stop(*_):
        global running
        running = False
    signal.signal(signal.SIGTERM, stop)
    for i in range(count):
        open_one("head" if i % 2 else "body")
    print(json.dumps({"open": len(conns)}), flush=True)
    next_tick = time.monotonic() + interval
    while running:
        for key, _ in sel.select(timeout=max(0.0, min(0.2, next_tick - time.monotonic()))):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 "):
                code = data[9:12].decode()
                stats["answers"][code] = stats["answers"].get(code, 0) + 1
            drop(key.fileobj)
        if time.monotonic() >= next_tick:
            next_tick += interval
            for s, kind in list(conns.items()):
                try:
                    s.send(b"X-Slow: 1\\r\\n" if kind == "head" else b" ")
                except OSError:
                    drop(s)
    stats["open_at_end"] = len(conns)
    print(json.dumps(stats), flush=True)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_granian(target: str, workers: int, env: dict[str, str], cwd: Path, log_path: Path):  # type: ignore[no-untyped-def]
    """granian serving `target` (a factory in bench_granian_apps); waits until it accepts."""
    port = free_port()
    cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(workers), "--log-level", "warning", "--no-ws", "--backlog", "2048"]
    cmd += (
        ["--factory", f"bench_granian_apps:{target}"]
        if target != "trivial"
        else ["bench_granian_apps:trivial"]
    )
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=log)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"granian {target} did not start:\n{log_path.read_text()[-2000:]}")


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
    failed: list[int] = field(default_factory=list)  # indexes of bodies not answered 200

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


def fire(name: str, base_url: str, bodies: list[bytes], clients: int, rate: float | None = None) -> Run:
    """Send every body once from `clients` keep-alive connections; record status, outcome, latency.

    Without `rate`, each client sends its next body as soon as it has an answer. With `rate`, body j
    is due at start + j / rate (client j % clients sends it) and latency counts from that moment.
    """
    host, port = base_url.removeprefix("http://").split(":")
    run = Run(name)
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    shared: queue.SimpleQueue[tuple[int, bytes]] = queue.SimpleQueue()
    for item in enumerate(bodies):
        shared.put(item)
    start = 0.0

    def jobs(worker: int):  # type: ignore[no-untyped-def]
        if rate is None:
            while True:
                try:
                    yield shared.get_nowait()
                except queue.Empty:
                    return
        else:
            yield from ((j, bodies[j]) for j in range(worker, len(bodies), clients))

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        mine: list[tuple[float, int, str]] = []
        start_gate.wait()
        for j, body in jobs(index):
            due = start + j / rate if rate else 0.0
            if rate:
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
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
                    run.failed.append(j)
                continue
            elapsed = time.perf_counter() - (due if rate else t0)
            outcome = json.loads(data).get("outcome", "-") if status == 200 else "-"
            mine.append((elapsed, status, outcome))
            if status != 200:
                with lock:
                    run.failed.append(j)
        conn.close()
        with lock:
            for elapsed, status, outcome in mine:
                run.latencies.append(elapsed)
                run.statuses[status] = run.statuses.get(status, 0) + 1
                run.outcomes[outcome] = run.outcomes.get(outcome, 0) + 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start = time.perf_counter() + 0.05  # every worker reads `start` after the gate
    start_gate.wait()
    for t in threads:
        t.join()
    run.seconds = time.perf_counter() - start
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


def stop_process(proc: subprocess.Popen) -> tuple[int, float]:
    """SIGTERM, wait; (exit code, CPU seconds the process used)."""
    proc.terminate()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        time.sleep(0.05)
    proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def settle(url: str, label: str, limit: float = 60.0) -> None:
    """Wait until the listener's drainer has sent every receipt queued so far, so that the next run
    measures the listener in a steady state, not competing with the previous run's backlog (a listener
    without an outbox queues nothing: no wait). Prints how long the backlog took."""
    from sqlalchemy import text

    from services.adapters.db import make_engine

    engine = make_engine(url)
    started = time.perf_counter()
    pending, last, last_change = 0, None, started
    try:
        with engine.connect() as conn:
            while time.perf_counter() - started < limit:
                pending = conn.execute(
                    text("SELECT count(*) FROM email_outbox WHERE status = 'pending'")
                ).scalar_one()
                conn.commit()
                if pending != last:
                    last, last_change = pending, time.perf_counter()
                if not pending or time.perf_counter() - last_change > 3:  # done, or nothing drains
                    break
                time.sleep(0.2)
    finally:
        engine.dispose()
    waited = time.perf_counter() - started
    if waited > 0.5 and last_change > started:
        print(f"    {label}: the drainer's backlog took {waited:.1f} s to send ({pending} still pending)")


def seed(url: str, count: int) -> list[dict]:
    """One organization and content, `count` customers each with a pending purchase; returns sessions."""
    from sqlalchemy import func, insert, select

    from services.adapters.db import make_engine
    from services.adapters.migrations import migrate
    from services.core import models as m

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


def with_duplicates(sessions: list[dict], every: int) -> tuple[list[bytes], int]:
    bodies: list[bytes] = []
    duplicates = 0
    for i, session in enumerate(sessions):
        body = event_for(session)
        bodies.append(body)
        if every and i % every == 0:
            bodies.append(body)  # right behind its original: often handled at the same moment
            duplicates += 1
    return bodies, duplicates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000, help="distinct purchases per run")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=150.0, help="offered events/s of the paced run")
    parser.add_argument(
        "--duplicate-every", type=int, default=10, help="send every Nth event twice (0: none)"
    )
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--workers", default="1,2", help="listener worker counts to measure, e.g. 1,2")
    parser.add_argument("--slow-clients", type=int, default=1000, help="slow connections of the attack run")
    parser.add_argument(
        "--slow-rate", type=float, default=0.0, help="offered events/s during the attack (0: half saturation)"
    )
    parser.add_argument("--slow-events", type=int, default=1000, help="distinct purchases of the attack run")
    parser.add_argument("--before", type=Path, help="also measure the listener of this checkout")
    parser.add_argument(
        "--servers", action="store_true", help="also measure bare uvicorn/granian and granian+app"
    )
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    targets = [("listener", None)] + ([("before", args.before.resolve())] if args.before else [])
    if args.servers:
        targets.append(("granian+app", None))
    configs = [(name, path, w) for name, path in targets for w in worker_counts]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    from services.adapters.http_listener import raise_open_files_limit

    raise_open_files_limit(args.slow_clients + 4096)
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp_dir:
        tmp = Path(tmp_dir)
        tmp.chmod(0o755)  # pgserver runs PostgreSQL as its own user when we are root
        (tmp / "bench_asgi_peer.py").write_text(ASGI_PEER)
        (tmp / "bench_granian_apps.py").write_text(GRANIAN_APPS)
        server = pgserver.get_server(tmp / "pgdata", cleanup_mode="delete")
        try:
            server.psql("CREATE DATABASE bench;")
            url = server.get_uri().replace("/postgres?", "/bench?", 1)
            per_config = args.warmup + 3 * args.events + args.slow_events
            t0 = time.perf_counter()
            sessions = seed(url, per_config * len(configs))
            print(f"seeded {len(sessions)} pending purchases in {time.perf_counter() - t0:.1f} s")

            env = {k: v for k, v in os.environ.items() if k not in CODEX_ENV}
            home = tmp / "home"
            env.update(DATABASE_URL=url, CODEX_HOME=str(home), STRIPE_WEBHOOK_SECRET_PAYMENT=SECRET)
            load = Path("/proc/loadavg").read_text().split()[:3]
            print(f"load average before the runs: {' '.join(load)} on {os.cpu_count()} cores (shared)")

            def plan(chunk: list[dict]):  # type: ignore[no-untyped-def]
                """Warm-up bodies, then (bodies, duplicates) for saturation, target, half-load, attack."""
                warmup = [event_for(s) for s in chunk[: args.warmup]]
                rest = chunk[args.warmup :]
                runs = [
                    with_duplicates(rest[i * args.events : (i + 1) * args.events], args.duplicate_every)
                    for i in range(3)
                ]
                runs.append(with_duplicates(rest[3 * args.events :], args.duplicate_every))
                return warmup, runs

            # The peers get the same shapes of traffic (their bodies are never applied anywhere).
            warmup, [(sat_bodies, dups), (paced_bodies, _), _, _] = plan(sessions[:per_config])
            peer, peer_url = start_process([sys.executable, "-c", TRIVIAL_SERVER], env, tmp, tmp / "peer.log")
            try:
                fire("warm-up", peer_url, warmup, args.clients)
                peer_sat = fire("peer (stdlib, no work), saturation", peer_url, sat_bodies, args.clients)
                peer_paced = fire(
                    f"peer, paced {args.rate:.0f}/s", peer_url, paced_bodies, args.clients, args.rate
                )
            finally:
                stop_process(peer)
            bare: list[Run] = []
            if args.servers:
                peer_env = {**env, "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT)])}
                for http in ("httptools", "h11"):
                    proc, bare_url = start_process(
                        [sys.executable, str(tmp / "bench_asgi_peer.py"), http],
                        peer_env,
                        tmp,
                        tmp / f"{http}.log",
                    )
                    try:
                        fire("warm-up", bare_url, warmup, args.clients)
                        bare.append(
                            fire(f"bare uvicorn+{http}, saturation", bare_url, sat_bodies, args.clients)
                        )
                    finally:
                        stop_process(proc)
                proc, bare_url = start_granian("trivial", 1, peer_env, tmp, tmp / "granian-trivial.log")
                try:
                    fire("warm-up", bare_url, warmup, args.clients)
                    bare.append(fire("bare granian, saturation", bare_url, sat_bodies, args.clients))
                finally:
                    stop_process(proc)

            print(
                f"{args.events} events + {dups} duplicates per run; {args.clients} keep-alive clients over "
                "loopback; a temporary PostgreSQL (pgserver, Unix socket); receipts to the outbox folder"
            )
            print("  " + peer_sat.line())
            print("  " + peer_paced.line())
            for run in bare:
                print("  " + run.line() + f"  = {run.rate / peer_sat.rate:.2f}x the stdlib peer")
            problems: list[str] = []
            summary: list[tuple[str, int, Run, Run, Run, int, int]] = []
            for index, (name, path, workers) in enumerate(configs):
                chunk = sessions[index * per_config : (index + 1) * per_config]
                (
                    warmup,
                    [(sat_bodies, sat_dups), (paced_bodies, paced_dups), (half_bodies, half_dups), attack],
                ) = plan(chunk)
                label = f"{name} x{workers}"
                if name == "granian+app":
                    granian_env = {**env, "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT)])}
                    listener, listener_url = start_granian(
                        "webhook_app", workers, granian_env, tmp, tmp / f"granian-{workers}.log"
                    )
                else:
                    run_env = env if path is None else {**env, "PYTHONPATH": str(path)}
                    listener, listener_url = start_process(
                        [sys.executable, "-m", "codex_cli", "webhook", "listen", "--port", "0", "--json"]
                        + ["--workers", str(workers)],
                        run_env,
                        tmp,
                        tmp / f"{name}-{workers}.log",
                    )
                try:
                    warm = fire("warm-up", listener_url, warmup, args.clients)
                    if warm.failed:  # re-sent, as Stripe retries, so that none is counted as lost
                        fire(
                            "warm-up retries", listener_url, [warmup[j] for j in sorted(set(warm.failed))], 1
                        )
                    sat = fire(f"{label}, saturation", listener_url, sat_bodies, args.clients)
                    settle(url, f"{label} after saturation")
                    time.sleep(1)
                    paced = fire(
                        f"{label}, paced {args.rate:.0f}/s",
                        listener_url,
                        paced_bodies,
                        args.clients,
                        args.rate,
                    )
                    settle(url, f"{label} after pacing")
                    time.sleep(1)
                    half_rate = max(1.0, sat.rate / 2)
                    half = fire(
                        f"{label}, paced {half_rate:.0f}/s (half)",
                        listener_url,
                        half_bodies,
                        args.clients,
                        half_rate,
                    )
                    settle(url, f"{label} after half load")
                    time.sleep(1)
                    slow, attacker_stats, retried = under_attack(
                        label, listener_url, attack[0], args, args.slow_rate or half_rate
                    )
                finally:
                    code, cpu = stop_process(listener)
                sent = len(warmup) + len(sat_bodies) + len(paced_bodies) + len(half_bodies) + len(attack[0])
                print("  " + sat.line())
                print("  " + paced.line())
                print("  " + half.line())
                print("  " + slow.line())
                first_try = slow.statuses.get(200, 0)
                print(
                    f"    {workers} worker(s): saturation {sat.rate:.0f} events/s = "
                    f"{sat.rate / peer_sat.rate:.2f}x the peer; at {args.rate:.0f}/s offered: "
                    f"p50 {paced.pct(50):.1f} ms, p99 {paced.pct(99):.1f} ms "
                    f"(peer p99 {peer_paced.pct(99):.1f} ms); "
                    f"CPU {cpu / sent * 1000:.2f} ms/request in the listener (PostgreSQL not included); "
                    f"exit {code} after SIGTERM"
                )
                print(
                    f"    with {args.slow_clients} slow clients: {first_try}/{len(attack[0])} valid "
                    "deliveries "
                    f"answered 200 at once ({dict(sorted(slow.statuses.items()))}, transport errors "
                    f"{len(slow.errors)}), p99 {slow.pct(99):.1f} ms; {retried} re-sent after the attack; "
                    f"attacker: {attacker_stats}"
                )
                print(
                    f"    targets: >= 300 events/s {'met' if sat.rate >= 300 else 'MISSED'}; p99 < 50 ms at "
                    f"{args.rate:.0f}/s {'met' if paced.pct(99) < 50 else 'MISSED'}; under attack every "
                    f"delivery 200 {'met' if first_try == len(attack[0]) else 'MISSED'}, p99 < 100 ms "
                    f"{'met' if slow.pct(99) < 100 and first_try == len(attack[0]) else 'MISSED'}"
                )
                summary.append((label, workers, sat, paced, slow, first_try, len(attack[0])))
                if warm.statuses.get(200) != len(warmup):
                    print(f"    note: warm-up answers {warm.statuses} (refused ones re-sent)")
                print(
                    f"    at half its saturation rate ({half.rate:.0f}/s): p50 {half.pct(50):.1f} ms, "
                    f"p99 {half.pct(99):.1f} ms"
                )
                for run, dups_sent in ((sat, sat_dups), (paced, paced_dups), (half, half_dups)):
                    print(
                        f"    verify {run.name}: answers {dict(sorted(run.statuses.items()))} "
                        f"{dict(sorted(run.outcomes.items()))}, transport errors {len(run.errors)}"
                    )
                    if run.statuses.get(200, 0) != args.events + dups_sent or run.errors:
                        problems.append(f"{run.name}: not every delivery answered 200")
                    if (
                        run.outcomes.get("processed", 0) != args.events
                        or run.outcomes.get("duplicate") != dups_sent
                    ):
                        problems.append(f"{run.name}: want {args.events} processed and {dups_sent} duplicate")
                if code != 0:
                    problems.append(f"{label} exited {code} after SIGTERM")

            print("summary (same run, shared machine: compare ratios):")
            print(f"  stdlib peer (no work): {peer_sat.rate:.0f}/s, p99 paced {peer_paced.pct(99):.1f} ms")
            for run in bare:
                print(f"  {run.name}: {run.rate:.0f}/s = {run.rate / peer_sat.rate:.2f}x the stdlib peer")
            for label, _, sat, paced, slow, first_try, total in summary:
                print(
                    f"  {label:<16} {sat.rate:6.0f}/s ({sat.rate / peer_sat.rate:.2f}x peer)  "
                    f"p99@{args.rate:.0f}/s {paced.pct(99):6.1f} ms  "
                    f"attack: {first_try}/{total} 200 at once, p99 {slow.pct(99):7.1f} ms"
                )
            rates = {row[0]: row[2].rate for row in summary}
            for w in worker_counts:
                after, before = rates.get(f"listener x{w}"), rates.get(f"before x{w}")
                if after and before:
                    print(f"  after/before saturation, {w} worker(s): {after / before:.2f}x")

            problems += verify_all(url, len(sessions))
            # Receipts go through the outbox (#17): the listener's drainer thread sends them; what it
            # had not sent when stopped is sent here, as cron's `codex email drain` would.
            drain = email_drain(env, tmp)
            print(f"verify: `codex email drain` after the runs: {drain.stdout.strip().splitlines()[-1:]}")
            emails = len(list((home / "outbox").glob("*.eml")))
            print(f"verify: receipt emails {emails} for {len(sessions)} purchases")
            if emails != len(sessions):
                problems.append(f"{emails} emails for {len(sessions)} purchases")
            if problems:
                print("EXACTLY-ONCE FAILED: " + "; ".join(problems))
                raise SystemExit(1)
            print(
                "exactly-once: OK (zero lost, zero applied twice, one email per purchase, "
                "every duplicate answered `duplicate`)"
            )
        finally:
            server.cleanup()


def under_attack(
    label: str, url: str, bodies: list[bytes], args: argparse.Namespace, rate: float
) -> tuple[Run, dict, int]:
    """Valid deliveries while slow clients hold connections; then re-send those refused (Stripe retries)."""
    host, port = url.removeprefix("http://").split(":")
    attacker = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLIENTS, host, port, str(args.slow_clients), "2.0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        opened = json.loads(attacker.stdout.readline())  # type: ignore[union-attr]
        time.sleep(1.0)
        run = fire(f"{label}, {rate:.0f}/s, {opened['open']} slow", url, bodies, args.clients, rate)
    finally:
        attacker.terminate()
        out, _ = attacker.communicate(timeout=60)
    stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    retry = [bodies[j] for j in sorted(set(run.failed))]
    if retry:
        again = fire(f"{label}, retries", url, retry, min(args.clients, len(retry)))
        still = len(again.failed)
        if still:
            print(f"    {label}: {still} deliveries still refused after the attack")
    return run, stats, len(retry)


def email_drain(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`codex email drain` as cron runs it: sends what the listener had queued but not sent."""
    command = [sys.executable, "-m", "codex_cli", "email", "drain"]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)


def verify_all(url: str, total: int) -> list[str]:
    """Database side: every purchase completed, one processed event row each, each applied once."""
    from sqlalchemy import func, select

    from services.adapters.db import make_engine
    from services.core import models as m

    engine = make_engine(url)
    with engine.connect() as conn:

        def count(model, *where):  # type: ignore[no-untyped-def]
            return conn.scalar(select(func.count()).select_from(model).where(*where))

        completed = count(m.ContentPurchase, m.ContentPurchase.status == m.PurchaseStatus.completed)
        processed = count(m.StripeEvent, m.StripeEvent.status == m.StripeEventStatus.processed)
        other = count(m.StripeEvent, m.StripeEvent.status != m.StripeEventStatus.processed)
        twice = count(m.StripeEvent, m.StripeEvent.attempts != 1)
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
