"""Run locks for cron commands, correct through a transaction-mode pooler (Neon's PgBouncer).

A run holds a transaction-scoped advisory lock in an open transaction on a connection of its own for
as long as it works. A pooler keeps one server connection pinned to an open transaction, so the lock
means what it says: it ends when the run's transaction ends — on success, on error, and when the
process dies (its connection closes and the server rolls the transaction back). Nothing lives in the
session, so nothing leaks onto a pooled connection. (A session-level lock did: through PgBouncer its
unlock ran on another server connection and the lock stayed behind on an idle one.)

The holder is named by the transaction itself: before taking the lock it sets `application_name`
for that transaction only (`set_config(..., true)`), and a run that finds the lock held reads the
holder's tag and transaction start from `pg_locks` + `pg_stat_activity`. No table, no stale rows.
The open transaction holds no snapshot between statements, so it does not hold back VACUUM.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

_TAG = re.compile(r"^codex-lock (?P<name>\S+) pid=(?P<pid>\d+) host=(?P<host>.*)$")
_NAMEDATALEN = 63  # PostgreSQL truncates application_name to 63 bytes


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run lock, as far as the database can tell."""

    host: str | None
    pid: int | None
    since: datetime | None
    age: timedelta | None

    def describe(self) -> str:
        who = f"pid {self.pid} on {self.host}" if self.pid is not None else "an unidentified process"
        if self.since is None or self.age is None:
            return who
        return f"{who} since {self.since:%Y-%m-%d %H:%M:%S %Z} ({_short(self.age)} ago)"


@dataclass(frozen=True)
class RunLock:
    """The outcome of asking for a run lock: acquired, or held by `holder`; `stale` when that holder
    has held it longer than the allowed maximum (a person should look)."""

    acquired: bool
    holder: LockHolder | None = None
    stale: bool = False
    max_age: timedelta | None = None


def _tag(name: str) -> str:
    tag = f"codex-lock {name} pid={os.getpid()} host={socket.gethostname()}"
    return tag.encode()[:_NAMEDATALEN].decode(errors="ignore")


@contextmanager
def run_lock(engine: Engine, name: str, max_age: timedelta) -> Iterator[RunLock]:
    """Hold lock `name` for the body of the `with`; yields a RunLock saying whether it was acquired.

    Not acquired: the holder is named, and `stale` is true when it has held the lock past `max_age`."""
    key = lock_key(name)
    with engine.connect() as conn:
        conn.execute(text("SELECT set_config('application_name', :tag, true)"), {"tag": _tag(name)})
        acquired = bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar())
        if acquired:
            try:
                yield RunLock(acquired=True)
            finally:
                conn.rollback()  # ends the transaction, and with it the lock
            return
        holder = _holder(conn, key)
        conn.rollback()
    stale = holder is not None and holder.age is not None and holder.age > max_age
    yield RunLock(acquired=False, holder=holder, stale=stale, max_age=max_age)


def _holder(conn: Connection, key: int) -> LockHolder | None:
    """The holder of advisory lock `key` from the server's own views (None if it just went away)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    row = conn.execute(
        text(
            "SELECT a.application_name, a.xact_start, now() - a.xact_start"
            " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.classid = CAST(:hi AS oid) AND l.objid = CAST(:lo AS oid)"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"hi": unsigned >> 32, "lo": unsigned & 0xFFFF_FFFF},
    ).first()
    if row is None:
        return None
    application_name, since, age = row
    match = _TAG.match(application_name or "")
    if match is None:
        return LockHolder(host=None, pid=None, since=since, age=age)
    return LockHolder(host=match["host"], pid=int(match["pid"]), since=since, age=age)


def _short(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"
