"""Cleanup of what nobody uses, for cron: orphaned objects in the media bucket, stale uploads, abandoned
multipart uploads (`cleanup_orphans`). Expired sessions are `services.maintenance.sessions`.

Built for buckets of millions of objects with bounded memory:

- the bucket is listed page by page (1,000 keys a page) and never collected;
- keys are checked against the database in batches: ONE query per page, never one per key;
- orphans are deleted with DeleteObjects, 1,000 keys a request, and every key is re-checked by the
  query that immediately precedes its delete request, so a row that appeared meanwhile saves it.

Two ways to run:

- unattended (`confirm=None`): a single streamed pass. Each page's query also re-checks the orphans
  still waiting for a full delete batch, so the page query doubles as the re-check: one query per
  page, one delete request per 1,000 orphans, at most ~2,000 keys in memory;
- with a confirmation (a person at a terminal): a scan pass counts what would go and spools the
  orphan keys to a temporary file (disk, not memory); after the person says yes, the spool is read
  back 1,000 keys at a time, each batch re-checked with one query and then deleted. Only keys that
  were shown to the person can be deleted. A dry run is the scan pass without the spool.

Only keys that match the R2 key layout (services.core.r2keys) under `originals/`, `hls/`, `thumbnails/`
and `resources/` of an organization are ever candidates; everything else (assets/, foreign keys,
ids that are not UUIDs) is left alone.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from services.adapters.locks import LockHolder, run_lock
from services.core.audit import record_audit
from services.core.errors import Conflict, ValidationError
from services.core.r2keys import classify_key

if TYPE_CHECKING:
    from services.bootstrap import Container

ORPHANS_LOCK = "codex-cleanup"
ACTOR = "codex cleanup"
PAGE_SIZE = 1000
DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys
SAMPLE_SIZE = 20
ERROR_SAMPLE_SIZE = 10


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Candidate:
    """Something the run would remove: an orphan object, a stale upload, an abandoned multipart upload."""

    kind: str  # "orphan" | "stale_media" | "multipart"
    key: str
    size: int | None = None


@dataclass(frozen=True)
class CleanupPlan:
    """What a confirmed run is about to remove; shown to the person before anything is deleted."""

    cutoff: datetime
    keys_listed: int
    orphans: int
    orphan_bytes: int
    stale_media: int
    stale_media_bytes: int
    multipart_uploads: int

    @property
    def empty(self) -> bool:
        return not (self.orphans or self.stale_media or self.multipart_uploads)


@dataclass(frozen=True)
class CleanupProgress:
    """Reported after every listed page and every delete batch (for a progress display)."""

    phase: str  # "scan" | "delete" | "stale media" | "multipart"
    keys_listed: int
    orphans_found: int
    orphans_deleted: int


@dataclass
class OrphanCleanupResult:
    """The outcome of `cleanup_orphans`; `*_found` counts what the scan saw, the rest what was done."""

    dry_run: bool
    older_than_seconds: int
    cutoff: datetime
    bucket: str
    locked_out: bool = False
    lock_holder: LockHolder | None = None
    lock_stale: bool = False  # held past CODEX_LOCK_MAX_AGE: a person should look
    aborted: bool = False
    keys_listed: int = 0
    keys_checked: int = 0
    keys_outside_layout: int = 0
    keys_too_young: int = 0
    orphans_found: int = 0
    orphan_bytes_found: int = 0
    orphans_deleted: int = 0
    orphan_bytes_deleted: int = 0
    saved_by_recheck: int = 0
    stale_media_found: int = 0
    stale_media_bytes_found: int = 0
    stale_media_deleted: int = 0
    stale_media_bytes_deleted: int = 0
    multipart_found: int = 0
    multipart_aborted: int = 0
    resume_records_dropped: int = 0
    delete_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    sample: list[Candidate] = field(default_factory=list)
    db_queries: int = 0
    delete_requests: int = 0

    @property
    def bytes_reclaimed(self) -> int:
        return self.orphan_bytes_deleted + self.stale_media_bytes_deleted

    @property
    def failed(self) -> bool:
        return self.delete_errors > 0

    def plan(self) -> CleanupPlan:
        return CleanupPlan(
            cutoff=self.cutoff,
            keys_listed=self.keys_listed,
            orphans=self.orphans_found,
            orphan_bytes=self.orphan_bytes_found,
            stale_media=self.stale_media_found,
            stale_media_bytes=self.stale_media_bytes_found,
            multipart_uploads=self.multipart_found,
        )

    def audit_details(self) -> dict[str, Any]:
        return {
            "older_than_seconds": self.older_than_seconds,
            "cutoff": self.cutoff.isoformat(),
            "bucket": self.bucket,
            "keys_listed": self.keys_listed,
            "orphans_deleted": self.orphans_deleted,
            "orphan_bytes_deleted": self.orphan_bytes_deleted,
            "saved_by_recheck": self.saved_by_recheck,
            "stale_media_deleted": self.stale_media_deleted,
            "stale_media_bytes_deleted": self.stale_media_bytes_deleted,
            "multipart_aborted": self.multipart_aborted,
            "resume_records_dropped": self.resume_records_dropped,
            "bytes_reclaimed": self.bytes_reclaimed,
            "delete_errors": self.delete_errors,
        }


ConfirmFn = Callable[[CleanupPlan], bool]
ProgressFn = Callable[[CleanupProgress], None]
CandidateFn = Callable[[Candidate], None]


# ------------------------------------------------------------------------------------------ orphans


def cleanup_orphans(
    container: Container,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    confirm: ConfirmFn | None = None,
    on_progress: ProgressFn | None = None,
    on_candidate: CandidateFn | None = None,
    now: datetime | None = None,
    page_size: int = PAGE_SIZE,
    batch_size: int = DELETE_BATCH,
    actor: str = ACTOR,
) -> OrphanCleanupResult:
    """Delete orphaned objects, stale uploaded media and abandoned multipart uploads older than `older_than`.

    `confirm` (given the counts) is asked after a scan and before anything is deleted; without it the
    run is one unattended streamed pass. `on_candidate` sees every candidate the scan finds (a dry run
    lists them through it). Another run holding the lock makes this one return with `locked_out`.
    """
    if older_than < timedelta(0):
        raise ValidationError("The age must not be negative.", field="older_than")
    if not 1 <= batch_size <= DELETE_BATCH:
        raise ValidationError(f"The delete batch must hold 1 to {DELETE_BATCH} keys.")
    now = now or datetime.now(UTC)
    store = container.object_store
    result = OrphanCleanupResult(
        dry_run=dry_run,
        older_than_seconds=int(older_than.total_seconds()),
        cutoff=now - older_than,
        bucket=getattr(store, "bucket", container.settings.r2_media_bucket),
    )
    run = _OrphanRun(container, store, result, on_progress, on_candidate, page_size, batch_size)
    if dry_run:
        try:
            run.count_stale_media()
            run.scan(spool=None)
            run.count_multipart()
        finally:
            run.close()
        return result
    with run_lock(container.engine, ORPHANS_LOCK, container.settings.lock_max_age()) as lock:
        if not lock.acquired:
            result.locked_out, result.lock_holder, result.lock_stale = True, lock.holder, lock.stale
            return result
        try:
            if confirm is None:
                run.delete_stale_media()
                run.stream()
                run.abort_multipart()
            else:
                with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
                    run.count_stale_media()
                    run.scan(spool)
                    run.count_multipart()
                    if not confirm(result.plan()):
                        result.aborted = True
                        return result
                    run.delete_stale_media()
                    run.delete_spooled(spool)
                    run.abort_multipart()
        except BaseException as exc:
            _audit_quietly(container, actor, "cleanup.orphans", result, exc)
            raise
        finally:
            run.close()
        audit_run(container, actor, "cleanup.orphans", result.bucket, result.audit_details())
    return result


# The page's keys as a joined set rather than `col = ANY(:keys)`: once psycopg prepares the statement
# (5th run) PostgreSQL may switch to a generic plan, where `= ANY(param)` is a linear scan of the array
# per row (10x slower on an unindexed column like content.thumbnail_r2_key); a join stays hashed.
_CHECK_SQL = """
WITH k AS MATERIALIZED (SELECT unnest(:keys) AS key)
SELECT 'k', m.r2_key FROM media_items m JOIN k ON m.r2_key = k.key
UNION ALL
SELECT 'k', c.thumbnail_r2_key FROM content c JOIN k ON c.thumbnail_r2_key = k.key
UNION ALL
SELECT 'k', r.r2_key FROM resources r JOIN k ON r.r2_key = k.key
UNION ALL
SELECT 'm', id::text FROM media_items WHERE id = ANY(:media_ids) AND deleted_at IS NULL
"""

_STALE_WHERE = """
    s.status = 'uploaded' AND s.created_at < :cutoff
    AND NOT EXISTS (SELECT 1 FROM content c WHERE c.media_item_id = s.id)
"""


@dataclass(frozen=True)
class _Obj:
    key: str
    size: int
    media_id: uuid.UUID | None


class _OrphanRun:
    """One run's state: the check connection, the counters and the phases of `cleanup_orphans`."""

    def __init__(
        self,
        container: Container,
        store: Any,
        result: OrphanCleanupResult,
        on_progress: ProgressFn | None,
        on_candidate: CandidateFn | None,
        page_size: int,
        batch_size: int,
    ) -> None:
        self.container = container
        self.store = store
        self.result = result
        self.on_progress = on_progress
        self.on_candidate = on_candidate
        self.page_size = page_size
        self.batch_size = batch_size
        self._conn: Any = None
        self._check: Any = None

    # --- database ---

    def _connection(self) -> Any:
        """An autocommit connection: each check query is one round trip and sees the latest commits."""
        if self._conn is None:
            from sqlalchemy import Text, bindparam, text
            from sqlalchemy.dialects.postgresql import ARRAY, UUID

            self._conn = self.container.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._check = text(_CHECK_SQL).bindparams(
                bindparam("keys", type_=ARRAY(Text)),
                bindparam("media_ids", type_=ARRAY(UUID(as_uuid=True))),
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def referenced(self, objs: list[_Obj]) -> set[str]:
        """The keys among `objs` that a row references (directly, or as a live media item's HLS/thumbnail)."""
        conn = self._connection()
        media_ids = list({o.media_id for o in objs if o.media_id is not None})
        rows = conn.execute(self._check, {"keys": [o.key for o in objs], "media_ids": media_ids})
        self.result.db_queries += 1
        keys: set[str] = set()
        live: set[str] = set()
        for kind, value in rows:
            (keys if kind == "k" else live).add(value)
        return {o.key for o in objs if o.key in keys or (o.media_id is not None and str(o.media_id) in live)}

    # --- listing ---

    def _pages(self) -> Iterator[list[_Obj]]:
        """Listed pages reduced to the keys in the layout and older than the cutoff."""
        result = self.result
        for page in self.store.iter_pages(prefix="", page_size=self.page_size):
            result.keys_listed += len(page)
            objs = []
            for info in page:
                kind = classify_key(info.key)
                if kind is None:
                    result.keys_outside_layout += 1
                elif info.last_modified >= result.cutoff:
                    result.keys_too_young += 1
                else:
                    objs.append(_Obj(info.key, info.size, kind.media_id))
            result.keys_checked += len(objs)
            yield objs

    def _found(self, objs: Iterable[_Obj]) -> None:
        for o in objs:
            self.result.orphans_found += 1
            self.result.orphan_bytes_found += o.size
            self._candidate(Candidate("orphan", o.key, o.size))

    def _candidate(self, candidate: Candidate) -> None:
        if len(self.result.sample) < SAMPLE_SIZE:
            self.result.sample.append(candidate)
        if self.on_candidate is not None:
            self.on_candidate(candidate)

    def _progress(self, phase: str) -> None:
        if self.on_progress is not None:
            r = self.result
            self.on_progress(CleanupProgress(phase, r.keys_listed, r.orphans_found, r.orphans_deleted))

    # --- the phases ---

    def scan(self, spool: IO[str] | None) -> None:
        """Count the orphans (one query per page) and spool their keys for the delete phase."""
        for objs in self._pages():
            if objs:
                refs = self.referenced(objs)
                orphans = [o for o in objs if o.key not in refs]
                self._found(orphans)
                if spool is not None:
                    spool.writelines(json.dumps([o.key, o.size]) + "\n" for o in orphans)
            self._progress("scan")

    def stream(self) -> None:
        """Unattended: find and delete in one pass; each page's query also re-checks the waiting orphans."""
        pending: list[_Obj] = []
        fresh = True  # whether `pending` was checked by the last query, with no listing since
        for objs in self._pages():
            fresh = False
            if objs:
                batch = pending + objs
                refs = self.referenced(batch)
                fresh = True
                self.result.saved_by_recheck += sum(1 for o in pending if o.key in refs)
                new = [o for o in objs if o.key not in refs]
                self._found(new)
                pending = [o for o in pending if o.key not in refs] + new
                while len(pending) >= self.batch_size:
                    self._delete(pending[: self.batch_size])
                    pending = pending[self.batch_size :]
            self._progress("scan")
        if pending and not fresh:
            refs = self.referenced(pending)
            self.result.saved_by_recheck += len(refs)
            pending = [o for o in pending if o.key not in refs]
        for start in range(0, len(pending), self.batch_size):
            self._delete(pending[start : start + self.batch_size])

    def delete_spooled(self, spool: IO[str]) -> None:
        """Read the scan's spool back a batch at a time: re-check each batch, then delete what is left."""
        spool.flush()
        spool.seek(0)
        batch: list[_Obj] = []
        for line in spool:
            key, size = json.loads(line)
            kind = classify_key(key)
            batch.append(_Obj(key, size, kind.media_id if kind else None))
            if len(batch) == self.batch_size:
                self._recheck_and_delete(batch)
                batch = []
        if batch:
            self._recheck_and_delete(batch)

    def _recheck_and_delete(self, batch: list[_Obj]) -> None:
        refs = self.referenced(batch)
        self.result.saved_by_recheck += len(refs)
        self._delete([o for o in batch if o.key not in refs])

    def _delete(self, objs: list[_Obj]) -> None:
        if not objs:
            return
        sizes = {o.key: o.size for o in objs}
        outcome = self.store.delete_many(list(sizes))
        self.result.delete_requests += 1
        self.result.orphans_deleted += len(outcome.deleted)
        self.result.orphan_bytes_deleted += sum(sizes.get(k, 0) for k in outcome.deleted)
        self._errors(outcome.errors)
        self._progress("delete")

    def _errors(self, errors: list[tuple[str, str]]) -> None:
        self.result.delete_errors += len(errors)
        for key, message in errors:
            if len(self.result.error_samples) < ERROR_SAMPLE_SIZE:
                self.result.error_samples.append(f"{key}: {message}")

    # --- stale uploaded media ---

    def count_stale_media(self) -> None:
        from sqlalchemy import text

        conn = self._connection()
        row = conn.execute(
            text(
                f"SELECT count(*), coalesce(sum(file_size_bytes), 0) FROM media_items s WHERE {_STALE_WHERE}"
            ),
            {"cutoff": self.result.cutoff},
        ).one()
        self.result.db_queries += 1
        self.result.stale_media_found += int(row[0])
        self.result.stale_media_bytes_found += int(row[1])
        if self.on_candidate is not None or len(self.result.sample) < SAMPLE_SIZE:
            self._stale_candidates()

    def _stale_candidates(self) -> None:
        """Show each stale upload (a dry run lists them all; otherwise only a sample is kept)."""
        from sqlalchemy import text

        limit = None if self.on_candidate is not None else SAMPLE_SIZE - len(self.result.sample)
        last: uuid.UUID | None = None
        while True:
            rows = (
                self._connection()
                .execute(
                    text(
                        f"SELECT s.id, s.r2_key, s.file_size_bytes FROM media_items s WHERE {_STALE_WHERE}"
                        " AND (CAST(:last AS uuid) IS NULL OR s.id > :last) ORDER BY s.id LIMIT :n"
                    ),
                    {
                        "cutoff": self.result.cutoff,
                        "last": last,
                        "n": min(limit or DELETE_BATCH, DELETE_BATCH),
                    },
                )
                .all()
            )
            self.result.db_queries += 1
            for media_id, key, size in rows:
                self._candidate(Candidate("stale_media", key, int(size)))
                last = media_id
            if limit is not None:
                limit -= len(rows)
            if len(rows) < DELETE_BATCH or (limit is not None and limit <= 0):
                return

    def delete_stale_media(self) -> None:
        """Delete stale uploaded rows (re-checked and locked by the DELETE itself), then their objects.

        Row first: if the object delete fails, the object is an ordinary orphan for the next run; the
        other order could leave a row pointing at nothing.
        """
        from sqlalchemy import text
        from sqlalchemy.exc import IntegrityError

        statement = text(
            "DELETE FROM media_items m WHERE m.id IN ("
            f" SELECT s.id FROM media_items s WHERE {_STALE_WHERE}"
            " ORDER BY s.id LIMIT :n FOR UPDATE SKIP LOCKED)"
            " RETURNING m.r2_key, m.file_size_bytes"
        )
        while True:
            try:
                with self.container.engine.begin() as conn:
                    rows = conn.execute(statement, {"cutoff": self.result.cutoff, "n": self.batch_size}).all()
            except IntegrityError:
                # content was attached to one of them between the check and the delete: the foreign key
                # refused, the batch rolled back, nothing is lost
                raise Conflict(
                    "A stale upload was attached to content while cleanup ran; nothing in that batch was "
                    "deleted. Run cleanup again."
                ) from None
            self.result.db_queries += 1
            if not rows:
                return
            sizes = {key: int(size) for key, size in rows}
            self.result.stale_media_deleted += len(rows)
            self.result.stale_media_bytes_deleted += sum(sizes.values())
            outcome = self.store.delete_many(list(sizes))
            self.result.delete_requests += 1
            self._errors(outcome.errors)
            self._progress("stale media")
            if len(rows) < self.batch_size:
                return

    # --- abandoned multipart uploads ---

    def _old_uploads(self) -> Iterator[Any]:
        for upload in self.store.iter_multipart_uploads(prefix=""):
            if classify_key(upload.key) is not None and upload.initiated < self.result.cutoff:
                yield upload

    def count_multipart(self) -> None:
        for upload in self._old_uploads():
            self.result.multipart_found += 1
            self._candidate(Candidate("multipart", upload.key))

    def abort_multipart(self) -> None:
        from services.media import resume

        aborted = []
        for upload in self._old_uploads():
            self.store.abort_multipart_upload(upload.key, upload.upload_id)
            self.result.multipart_aborted += 1
            aborted.append(upload.upload_id)
        # their resume records (on this machine) would only point a rerun at an upload that is gone
        self.result.resume_records_dropped = resume.drop_uploads(self.container.settings.codex_home, aborted)
        self._progress("multipart")


# ------------------------------------------------------------------------------------------ audit


def audit_run(
    container: Container, actor: str, action: str, target: str | None, details: dict[str, Any]
) -> None:
    with container.uow() as uow:
        record_audit(uow.session, actor, action, "bucket" if target else None, target, details)
        uow.commit()


def _audit_quietly(
    container: Container, actor: str, action: str, result: OrphanCleanupResult, exc: BaseException
) -> None:
    """Record what a failed run had already deleted; never let this hide the original error."""
    if not (result.orphans_deleted or result.stale_media_deleted or result.multipart_aborted):
        return
    details = {**result.audit_details(), "error": type(exc).__name__}
    with contextlib.suppress(Exception):  # the run's own error is the one to report
        audit_run(container, actor, action, result.bucket, details)
