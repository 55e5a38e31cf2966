"""Measure `codex cleanup orphans` on a large bucket against a naive one-query-per-key cleanup.

Usage: python scripts/bench_cleanup.py [--objects 100000] [--orphan-ratio 0.1] [--skip-naive]
                                       [--store moto|local]

Builds a real PostgreSQL (the test suite's embedded server, migrated) with the rows that reference
90% of the objects (media originals + HLS + thumbnails, resources, content thumbnails) and a bucket on
moto's S3 server (its own process, real HTTP) holding all the objects; the other 10% are orphans
spread over the four prefixes. The objects are put straight into moto's in-memory backend (putting
100,000 objects over HTTP takes moto ~6 minutes); everything measured goes over HTTP.

Each measured run is a fresh child process, so its peak RSS is the cleanup's own:
  batched    cleanup_orphans unattended (`--yes`): one query per page, DeleteObjects per 1,000 orphans
  confirmed  cleanup_orphans with a confirmation: scan + spool to a temp file, then re-check and delete
  naive      the same rules with one database lookup and one DeleteObject per key (implemented here)
The orphans are put back between runs; after each run the script checks that exactly the orphans went.

moto lists a 100,000-key bucket slowly (~0.5 s per 1,000-key page: it sorts the whole bucket for every
page), so the table separates the time spent waiting for listing pages from the cleanup's own time.
`--store local` runs the same three runs on the LocalObjectStore (a directory), where listing is cheap
and the database side dominates; it has no HTTP, so requests are counted as store calls.

Database round trips: statements sent (SQLAlchemy cursor executes) + BEGIN/COMMIT of each explicit
transaction (check queries run in autocommit, one round trip each). S3 requests: botocore's
before-send events of the store's own client, by operation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUCKET = "codex-bench-media"
ORGS = 10
BODY = b"x" * 16


# ------------------------------------------------------------------------------------------ dataset


def build_dataset(objects: int, orphan_ratio: float, workdir: Path) -> dict[str, object]:
    """Rows as COPY files and object keys as files (referenced, orphans); returns the counts."""
    rng = random.Random(42)

    def uid() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    from services.core import r2keys

    orphans = int(objects * orphan_ratio)
    referenced = objects - orphans
    n_media = int(referenced * 0.8) // 4
    n_resources = (referenced - n_media * 4) // 2
    n_content = referenced - n_media * 4 - n_resources
    orgs = [uid() for _ in range(ORGS)]
    media: list[tuple[uuid.UUID, uuid.UUID]] = [(orgs[i % ORGS], uid()) for i in range(n_media)]

    files = {name: (workdir / f"{name}.tsv").open("w") for name in ("orgs", "media", "resources", "content")}
    keys_ref = (workdir / "referenced.keys").open("w")
    keys_orphan = (workdir / "orphan.keys").open("w")
    for i, org in enumerate(orgs):
        files["orgs"].write(f"{org}\tBench org {i}\tbench-org-{i}\n")
    for org, mid in media:
        key = r2keys.media_original(org, mid, "mp4")
        files["media"].write(f"{mid}\t{org}\tvideo\tready\t{key}\tv.mp4\tvideo/mp4\t{len(BODY)}\n")
        keys_ref.write(
            "\n".join(
                [
                    key,
                    r2keys.media_hls(org, mid),
                    r2keys.thumbnail(org, mid, "small"),
                    r2keys.thumbnail(org, mid, "medium"),
                ]
            )
            + "\n"
        )
    for i in range(n_resources):
        org, rid = orgs[i % ORGS], uid()
        key = r2keys.resource(org, rid, "workbook.pdf")
        files["resources"].write(f"{rid}\t{org}\t{key}\tworkbook.pdf\tapplication/pdf\t{len(BODY)}\n")
        keys_ref.write(key + "\n")
    for i in range(n_content):
        org, mid = media[i % n_media]
        thumb = r2keys.thumbnail(org, uid(), "large")  # a custom thumbnail, referenced by content only
        files["content"].write(f"{org}\t{mid}\tContent {i}\tcontent-{i}\tA description.\t999\t{thumb}\n")
        keys_ref.write(thumb + "\n")
    for i in range(orphans):
        org, oid = orgs[i % ORGS], uid()
        kind = i % 5
        if kind < 2:
            key = r2keys.media_original(org, oid, "mp4")
        elif kind == 2:
            key = r2keys.media_hls(org, oid)
        elif kind == 3:
            key = r2keys.thumbnail(org, oid, "small")
        else:
            key = r2keys.resource(org, oid, "notes.pdf")
        keys_orphan.write(key + "\n")
    for fh in [*files.values(), keys_ref, keys_orphan]:
        fh.close()
    return {
        "objects": objects,
        "referenced": referenced,
        "orphans": orphans,
        "media": n_media,
        "resources": n_resources,
        "content": n_content,
    }


def load_rows(url: str, workdir: Path) -> None:
    import psycopg

    tables = {
        "orgs": "organizations (id, name, slug)",
        "media": "media_items (id, organization_id, type, status, r2_key, filename, mime_type,"
        " file_size_bytes)",
        "resources": "resources (id, organization_id, r2_key, filename, mime_type, file_size_bytes)",
        "content": "content (organization_id, media_item_id, title, slug, description, price_cents,"
        " thumbnail_r2_key)",
    }
    with psycopg.connect(url) as conn:
        for name, target in tables.items():
            with (
                conn.cursor().copy(f"COPY {target} FROM STDIN") as copy,
                (workdir / f"{name}.tsv").open() as fh,
            ):
                for line in fh:
                    copy.write(line)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


# ------------------------------------------------------------------------------------------ S3 server


def serve_s3() -> None:
    """Child: moto's server on 127.0.0.1:0; stdin commands seed/count its in-memory bucket directly."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "seed":
            n = 0
            with open(arg) as fh:
                for key in fh:
                    backend.put_object(BUCKET, key.rstrip("\n"), BODY)
                    n += 1
            print(n, flush=True)
        elif command == "count":
            print(len(list(backend.get_bucket(BUCKET).keys.keys())), flush=True)
        else:
            break
    server.stop()


class S3Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-s3"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def ask(self, command: str) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class LocalStore:
    """The LocalObjectStore's directory, seeded by writing files (no server)."""

    def __init__(self, workdir: Path) -> None:
        self.url = "local"
        self.root = workdir / "home" / "objects" / BUCKET

    def ask(self, command: str) -> int:
        verb, _, arg = command.partition(" ")
        if verb == "seed":
            n = 0
            with open(arg) as fh:
                for key in fh:
                    path = self.root / key.rstrip("\n")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(BODY)
                    n += 1
            return n
        return sum(len(files) for _, _, files in os.walk(self.root))

    def stop(self) -> None:
        pass


# ------------------------------------------------------------------------------------------ measured runs


NAIVE_SQL = """
SELECT EXISTS (SELECT 1 FROM media_items WHERE r2_key = :key)
    OR EXISTS (SELECT 1 FROM content WHERE thumbnail_r2_key = :key)
    OR EXISTS (SELECT 1 FROM resources WHERE r2_key = :key)
    OR EXISTS (SELECT 1 FROM media_items WHERE id = CAST(:media_id AS uuid) AND deleted_at IS NULL)
"""


def naive_cleanup(container: object, cutoff: datetime) -> dict[str, int]:
    """The obvious loop: for each listed key, one database lookup; for each orphan, one DeleteObject."""
    from sqlalchemy import text

    from services.core.r2keys import classify_key

    store = container.object_store  # type: ignore[attr-defined]
    listed = checked = deleted = 0
    with container.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:  # type: ignore[attr-defined]
        for page in store.iter_pages(prefix="", page_size=1000):
            for info in page:
                listed += 1
                kind = classify_key(info.key)
                if kind is None or info.last_modified >= cutoff:
                    continue
                checked += 1
                media_id = str(kind.media_id) if kind.media_id else None
                if not conn.execute(text(NAIVE_SQL), {"key": info.key, "media_id": media_id}).scalar():
                    store.delete(info.key)
                    deleted += 1
    return {"keys_listed": listed, "keys_checked": checked, "orphans_deleted": deleted}


def _instrument(store: object) -> dict[str, float]:
    """Count the store's calls and time spent waiting for listing pages (the S3 server's share)."""
    calls: dict[str, float] = {"pages": 0, "delete_many": 0, "delete": 0, "listing_seconds": 0.0}
    iter_pages, delete_many, delete = store.iter_pages, store.delete_many, store.delete  # type: ignore[attr-defined]

    def timed_pages(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        pages = iter_pages(*args, **kwargs)
        while True:
            start = time.perf_counter()
            page = next(pages, None)
            calls["listing_seconds"] += time.perf_counter() - start
            if page is None:
                return
            calls["pages"] += 1
            yield page

    inside_many = []  # the local store's delete_many calls delete per key: not separate requests

    def counted_delete_many(keys):  # type: ignore[no-untyped-def]
        calls["delete_many"] += 1
        inside_many.append(True)
        try:
            return delete_many(keys)
        finally:
            inside_many.pop()

    def counted_delete(key):  # type: ignore[no-untyped-def]
        if not inside_many:
            calls["delete"] += 1
        return delete(key)

    store.iter_pages, store.delete_many, store.delete = timed_pages, counted_delete_many, counted_delete  # type: ignore[attr-defined]
    return calls


def run_child(mode: str, database_url: str, s3_url: str, workdir: str) -> None:
    """Child: one measured run; prints one JSON line of figures."""
    import resource

    from sqlalchemy import event

    from services.bootstrap import Container
    from services.maintenance.orphans import cleanup_orphans
    from services.settings import Settings

    s3 = {} if s3_url == "local" else {"r2_endpoint_url": s3_url, "r2_access_key_id": "testing"}
    settings = Settings(
        codex_home=Path(workdir) / "home",
        database_url=database_url,
        r2_secret_access_key="testing",
        r2_media_bucket=BUCKET,
        **s3,
    )
    container = Container(settings)
    store = container.object_store
    calls = _instrument(store)
    with container.engine.connect() as warm:  # dialect initialisation is not part of the run
        warm.exec_driver_sql("SELECT 1")
    counts: Counter[str] = Counter()

    @event.listens_for(container.engine, "before_cursor_execute")
    def _statement(*_: object) -> None:
        counts["statements"] += 1

    @event.listens_for(container.engine, "commit")
    def _commit(conn: object) -> None:
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":  # type: ignore[attr-defined]
            counts["transactions"] += 1

    s3_ops: Counter[str] = Counter()
    if hasattr(store, "client"):
        store.client.meta.events.register(
            "before-send.s3", lambda event_name, **_: s3_ops.update([event_name.rsplit(".", 1)[-1]])
        )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    now = datetime.now(UTC) + timedelta(hours=25)  # every object put a moment ago counts as 25h old
    start = time.perf_counter()
    if mode == "naive":
        figures = naive_cleanup(container, now - timedelta(hours=24))
    else:
        result = cleanup_orphans(
            container,
            timedelta(hours=24),
            now=now,
            confirm=(lambda plan: True) if mode == "confirmed" else None,
        )
        figures = {
            "keys_listed": result.keys_listed,
            "keys_checked": result.keys_checked,
            "orphans_deleted": result.orphans_deleted,
            "check_queries": result.db_queries,
        }
    elapsed = time.perf_counter() - start
    container.close()
    figures.update(
        mode=mode,
        seconds=elapsed,
        statements=counts["statements"],
        transactions=counts["transactions"],
        db_round_trips=counts["statements"] + 2 * counts["transactions"],
        s3_requests=dict(s3_ops),
        store_calls={k: v for k, v in calls.items() if k != "listing_seconds"},
        listing_seconds=calls["listing_seconds"],
        rss_before_mb=rss_before / 1024,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    print(json.dumps(figures))


def measure(mode: str, database_url: str, s3_url: str, workdir: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, database_url, s3_url, str(workdir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ report


def _deletes(run: dict[str, Any]) -> int:
    """Delete requests: HTTP ones on S3; delete_many/delete calls on the local store."""
    ops, calls = run["s3_requests"], run["store_calls"]
    if ops:
        return int(ops.get("DeleteObjects", 0) + ops.get("DeleteObject", 0))
    return int(calls["delete_many"] + calls["delete"])


def report(runs: list[dict[str, Any]], dataset: dict[str, Any], store: str) -> None:
    keys, orphans = int(dataset["objects"]), int(dataset["orphans"])
    where = (
        "moto's S3 server over HTTP (own process)" if store == "moto" else "LocalObjectStore (a directory)"
    )
    print(
        f"\n{keys:,} objects: {orphans:,} orphans, {dataset['referenced']:,} referenced by "
        f"{dataset['media']:,} media items (x4 keys), {dataset['resources']:,} resources and "
        f"{dataset['content']:,} content thumbnails.\nObject store: {where}; PostgreSQL: embedded, "
        "over a Unix socket.\n"
    )
    print(
        f"{'run':<10} {'total s':>8} {'listing s':>9} {'rest s':>7} {'keys/s':>8} {'keys/s*':>9} "
        f"{'DB trips':>9} {'/1k keys':>8} {'list req':>8} {'del req':>7} {'/1k orphans':>11} {'peak RSS':>9}"
    )
    for r in runs:
        total, listing = r["seconds"], r["listing_seconds"]
        rest = max(total - listing, 1e-9)
        lists = r["s3_requests"].get("ListObjectsV2", 0) if r["s3_requests"] else r["store_calls"]["pages"]
        print(
            f"{r['mode']:<10} {total:8.1f} {listing:9.1f} {rest:7.1f} {r['keys_listed'] / total:8,.0f} "
            f"{r['keys_listed'] / rest:9,.0f} {r['db_round_trips']:9,} "
            f"{r['db_round_trips'] / keys * 1000:8.2f} {lists:8,} {_deletes(r):7,} "
            f"{_deletes(r) / max(orphans, 1) * 1000:11.2f} {r['peak_rss_mb']:6.0f} MB"
        )
    print(
        "  keys/s* = keys listed per second of the cleanup's own time (total minus waiting for listing pages)"
    )
    for r in runs:
        print(
            f"  {r['mode']}: {r['statements']:,} statements + {r['transactions']} explicit transactions "
            f"(BEGIN/COMMIT each); S3 requests {r['s3_requests'] or 'n/a (local)'}; store calls "
            f"{r['store_calls']}; RSS when the run started {r['rss_before_mb']:.0f} MB"
        )
    by_mode = {r["mode"]: r for r in runs}
    batched = by_mode["batched"]
    if "naive" in by_mode:
        naive = by_mode["naive"]
        own_naive = naive["seconds"] - naive["listing_seconds"]
        own_batched = max(batched["seconds"] - batched["listing_seconds"], 1e-9)
        print(
            f"\nnaive / batched: {naive['seconds'] / batched['seconds']:.1f}x the total time, "
            f"{own_naive / own_batched:.0f}x the cleanup's own time, "
            f"{naive['db_round_trips'] / batched['db_round_trips']:.0f}x the database round trips, "
            f"{_deletes(naive) / max(_deletes(batched), 1):.0f}x the delete requests"
        )
    fixed = batched["db_round_trips"] - batched["check_queries"] + 1  # +1: the stale-media DELETE
    print("targets (batched run):")
    pages = batched["check_queries"] - 1  # the one other query the service counts: the stale-media DELETE
    print(
        f"  DB round trips <= 1 per 1,000 keys: {pages} page queries for {keys:,} keys "
        f"= {pages / keys * 1000:.2f}; plus {fixed} per run whatever the size "
        f"(advisory lock and unlock, stale-media DELETE, audit row) = "
        f"{batched['db_round_trips'] / keys * 1000:.2f} in all"
    )
    print(f"  S3 delete requests <= 1 per 1,000 orphans: {_deletes(batched) / orphans * 1000:.2f}")
    print(f"  peak RSS < 200 MB: {batched['peak_rss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--orphan-ratio", type=float, default=0.1)
    parser.add_argument("--skip-naive", action="store_true", help="Only measure the batched runs.")
    parser.add_argument(
        "--store",
        choices=["moto", "local"],
        default="moto",
        help="moto's S3 server, or the local directory store",
    )
    parser.add_argument("--serve-s3", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_s3:
        serve_s3()
        return
    if args.child:
        run_child(*args.child)
        return

    from tests.fixtures.s3 import raw_client
    from tests.pg import TestPostgres

    with tempfile.TemporaryDirectory(prefix="bench-cleanup-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        (workdir / "pg").mkdir()
        pg = TestPostgres(workdir / "pg")
        pg.create_template()
        db = pg.clone()
        dataset = build_dataset(args.objects, args.orphan_ratio, workdir)
        load_rows(pg.url(db), workdir)
        s3: S3Server | LocalStore = S3Server() if args.store == "moto" else LocalStore(workdir)
        try:
            if args.store == "moto":
                raw_client(s3.url).create_bucket(Bucket=BUCKET)
            s3.ask(f"seed {workdir / 'referenced.keys'}")
            modes = ["batched", "confirmed"] + ([] if args.skip_naive else ["naive"])
            print(
                f"set up in {time.perf_counter() - started:.0f} s; measuring {', '.join(modes)}", flush=True
            )
            runs = []
            for mode in modes:
                s3.ask(f"seed {workdir / 'orphan.keys'}")
                assert s3.ask("count") == args.objects
                runs.append(measure(mode, pg.sqlalchemy_url(db), s3.url, workdir))
                left = s3.ask("count")
                if left != dataset["referenced"] or runs[-1]["orphans_deleted"] != dataset["orphans"]:
                    sys.exit(f"{mode}: {left} objects left, expected {dataset['referenced']}")
                print(f"  {mode}: {runs[-1]['seconds']:.1f} s", flush=True)
            report(runs, dataset, args.store)
        finally:
            s3.stop()
            pg.drop(db)
            pg.server.cleanup()  # stop the server before its directory goes


if __name__ == "__main__":
    main()
