"""The media processing queue in PostgreSQL (table media_jobs), shared by workers on any number of
machines: a job is claimed with FOR UPDATE SKIP LOCKED and held by a lease the worker renews; a worker
that dies leaves it to be claimed again once the lease expires. Only the holder of the current claim
token may finish a job, so two workers never both publish one item.

Every transaction here is short (claim, renew, finish): safe behind a transaction-mode pooler.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.core import r2keys
from services.core.errors import CodexError, NotFound, ValidationError
from services.media.processing import LADDER, PRESET, Outputs, Rung, process_file
from services.media.status import can_move, move

if TYPE_CHECKING:
    from services.bootstrap import Container

log = logging.getLogger(__name__)

LEASE_SECONDS = 120
MAX_ATTEMPTS = 3
JOB_STATUSES = ("queued", "running", "done", "failed")
LOST = "Its lease expired; another worker took it over."
CONTENT_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t", ".jpg": "image/jpeg"}


@dataclass(frozen=True)
class JobView:
    id: uuid.UUID
    media_item_id: uuid.UUID
    status: str
    force: bool
    attempts: int
    worker: str | None
    lease_expires_at: datetime | None
    error: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class JobResult:
    """What became of one job: ready, failed (with the reason), skipped (already ready) or lost
    (its lease expired and another worker took it over)."""

    media_id: uuid.UUID
    job_id: uuid.UUID | None
    outcome: str
    error: str | None = None
    duration_seconds: int | None = None
    renditions: list[str] = field(default_factory=list)
    thumbnails: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in ("ready", "skipped")


@dataclass(frozen=True)
class _Claim:
    job_id: uuid.UUID
    media_id: uuid.UUID
    token: uuid.UUID
    force: bool
    org_id: uuid.UUID
    r2_key: str
    was_ready: bool


# ------------------------------------------------------------------------------------- enqueue


# Queue a job per item; an item with an open job keeps that one (its `force` raised if asked). In the
# driver's parameter style: used by `enqueue_jobs` and by the upload's plain-psycopg path (media/rows.py).
ENQUEUE_JOBS = (
    "INSERT INTO media_jobs (media_item_id, force) SELECT unnest(CAST(%(ids)s AS uuid[])), %(force)s "
    "ON CONFLICT (media_item_id) WHERE status IN ('queued', 'running') "
    "DO UPDATE SET force = media_jobs.force OR EXCLUDED.force"
)


def enqueue_jobs(session: Any, media_ids: Iterable[uuid.UUID], *, force: bool = False) -> int:
    """Queue a job per item in the caller's transaction; an item with an open job keeps that one."""
    ids = list(media_ids)
    if not ids:
        return 0
    result = session.connection().exec_driver_sql(ENQUEUE_JOBS, {"ids": ids, "force": force})
    return int(result.rowcount or 0)


# ---------------------------------------------------------------------------------- claim/lease

_CLAIM = """
WITH next AS (
    SELECT id FROM media_jobs
    WHERE (status = 'queued' OR (status = 'running' AND lease_expires_at < now())) {only}
    ORDER BY created_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE media_jobs j
SET status = 'running', worker = :worker, claim_token = :token, attempts = j.attempts + 1,
    lease_expires_at = now() + make_interval(secs => :lease), started_at = now(), updated_at = now()
FROM next WHERE j.id = next.id
RETURNING j.id, j.media_item_id, j.force, j.attempts
"""


def _claim(
    container: Container, worker: str, lease: float, only: list[uuid.UUID] | None
) -> _Claim | JobResult | None:
    """Claim the oldest claimable job (and move its item to transcoding) in one short transaction.
    None when there is nothing to claim; a JobResult when the job ended at once (deleted item,
    already ready, too many attempts)."""
    from sqlalchemy import select, text

    from services.core.models import MediaItem, MediaStatus

    token = uuid.uuid4()
    sql = _CLAIM.format(only="AND media_item_id = ANY(CAST(:only AS uuid[]))" if only is not None else "")
    with container.uow() as uow:
        s = uow.session
        params: dict[str, Any] = {"worker": worker, "token": token, "lease": lease}
        if only is not None:
            params["only"] = only
        row = s.execute(text(sql), params).first()
        if row is None:
            return None
        job_id, media_id, force, attempts = row
        item = s.scalars(select(MediaItem).where(MediaItem.id == media_id).with_for_update()).first()
        ended: JobResult | None = None
        if item is None or item.deleted_at is not None:
            ended = JobResult(media_id, job_id, "failed", "The media item was deleted.")
        elif attempts > MAX_ATTEMPTS:
            ended = JobResult(
                media_id,
                job_id,
                "failed",
                f"Gave up after {MAX_ATTEMPTS} attempts: the workers holding it stopped before finishing.",
            )
            if item.status != MediaStatus.ready:  # a forced re-run keeps a ready item playable
                move(item, "failed")
        elif item.status == MediaStatus.ready and not force:
            ended = JobResult(media_id, job_id, "skipped", "Already ready (use --force to process again).")
        if ended is not None:
            s.execute(
                text(
                    "UPDATE media_jobs SET status = :status, error = :error, finished_at = now(), "
                    "updated_at = now(), lease_expires_at = NULL WHERE id = :id"
                ),
                {
                    "status": "done" if ended.outcome == "skipped" else "failed",
                    "error": ended.error,
                    "id": job_id,
                },
            )
            uow.commit()
            return ended
        assert item is not None
        was_ready = item.status == MediaStatus.ready
        if not was_ready:  # a forced re-run keeps a ready item playable while it runs
            move(item, "transcoding")
        claim = _Claim(job_id, media_id, token, bool(force), item.organization_id, item.r2_key, was_ready)
        uow.commit()
    return claim


def _renew(container: Container, claim: _Claim, lease: float) -> bool:
    """Extend the lease; False when the claim is no longer ours (expired and taken over)."""
    from sqlalchemy import text

    with container.uow() as uow:
        result = uow.session.execute(
            text(
                "UPDATE media_jobs SET lease_expires_at = now() + make_interval(secs => :lease), "
                "updated_at = now() WHERE id = :id AND claim_token = :token AND status = 'running'"
            ),
            {"lease": lease, "id": claim.job_id, "token": claim.token},
        )
        uow.commit()
        return bool(getattr(result, "rowcount", 0))


def _release(container: Container, claim: _Claim) -> None:
    """Give a job back to the queue (graceful stop): claimable at once by any worker."""
    from sqlalchemy import text

    from services.core.models import MediaItem, MediaStatus

    with container.uow() as uow:
        result = uow.session.execute(
            text(
                "UPDATE media_jobs SET status = 'queued', claim_token = NULL, worker = NULL, "
                "lease_expires_at = NULL, attempts = greatest(attempts - 1, 0), updated_at = now() "
                "WHERE id = :id AND claim_token = :token AND status = 'running'"
            ),
            {"id": claim.job_id, "token": claim.token},
        )
        if getattr(result, "rowcount", 0) and not claim.was_ready:
            item = uow.session.get(MediaItem, claim.media_id, with_for_update=True)
            if item is not None and item.status == MediaStatus.transcoding:
                move(item, "uploaded")
        uow.commit()


def _finish(
    container: Container, claim: _Claim, worker: str, outputs: Outputs | None, error: str | None
) -> tuple[bool, str | None]:
    """Publish the result if the claim is still ours: item ready (duration set) or failed, job
    done/failed, audited; returns (True, the job's error). (False, error) when another worker holds
    the job now (nothing changed)."""
    from sqlalchemy import select, text

    from services.core.audit import record_audit
    from services.core.models import MediaItem

    with container.uow() as uow:
        s = uow.session
        held = s.execute(
            text(
                "SELECT id FROM media_jobs WHERE id = :id AND claim_token = :token AND status = 'running' "
                "FOR UPDATE"
            ),
            {"id": claim.job_id, "token": claim.token},
        ).first()
        if held is None:
            return False, error
        item = s.scalars(select(MediaItem).where(MediaItem.id == claim.media_id).with_for_update()).first()
        details: dict[str, Any] = {"job": str(claim.job_id)}
        if outputs is not None and error is None and item is not None and not can_move(item.status, "ready"):
            # An operator marked it failed while it was processed: theirs is the last word.
            error = "It was marked failed while being processed; it stays failed (process it again)."
        if outputs is not None and error is None and item is not None:
            item.duration_seconds = outputs.duration_seconds
            move(item, "ready")
            details.update(renditions=outputs.renditions, duration_seconds=outputs.duration_seconds)
            action, status = "media.ready", "done"
        else:
            if item is not None and not claim.was_ready:
                move(item, "failed")
            details["reason"] = error
            action, status = "media.failed", "failed"
        s.execute(
            text(
                "UPDATE media_jobs SET status = :status, error = :error, finished_at = now(), "
                "lease_expires_at = NULL, updated_at = now() WHERE id = :id"
            ),
            {"status": status, "error": error, "id": claim.job_id},
        )
        record_audit(s, f"media-worker:{worker}", action, "media_item", claim.media_id, details)
        uow.commit()
    return True, error


# ------------------------------------------------------------------------------------ running


def _download(container: Container, key: str, target: Path) -> None:
    from services.core.errors import ExternalServiceError

    url = container.object_store.presign_get(key, expires=3600)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(target, "wb") as out:  # noqa: S310
            shutil.copyfileobj(resp, out, 1 << 20)
    except OSError as exc:
        raise ExternalServiceError(f"Cannot download the original {key} ({exc}).") from None


def _upload(container: Container, claim: _Claim, outputs: Outputs, lost: threading.Event) -> list[str]:
    """Segments and variant playlists first, the master last, then thumbnails; stale keys of an
    earlier run removed. Overwrites whatever a worker that lost this job left behind."""
    store = container.object_store
    master = r2keys.media_hls(claim.org_id, claim.media_id)
    prefix = master.rsplit("/", 1)[0] + "/"
    written: list[str] = []
    for rel in outputs.hls_files:
        if lost.is_set():
            raise CodexError("The job's lease was lost; another worker took it over.")
        path = outputs.hls_dir / rel
        key = prefix + rel
        store.put_file(key, path, CONTENT_TYPES.get(path.suffix, "application/octet-stream"), {})
        written.append(key)
    for size, path in outputs.thumbnails.items():
        key = r2keys.thumbnail(claim.org_id, claim.media_id, size)  # type: ignore[arg-type]
        store.put_file(key, path, "image/jpeg", {})
        written.append(key)
    stale = [o.key for page in store.iter_pages(prefix) for o in page if o.key not in set(written)]
    if stale:
        store.delete_many(stale)
    return written


def _run_claim(
    container: Container,
    claim: _Claim,
    worker: str,
    lease: float,
    ladder: tuple[Rung, ...],
    preset: str,
    abort: threading.Event | None,
) -> JobResult:
    started = time.monotonic()
    lost = threading.Event()
    cancel = threading.Event()
    done = threading.Event()

    def heartbeat() -> None:
        every = max(0.2, lease / 3)
        last = time.monotonic()
        while not done.wait(min(0.5, every)):
            if abort is not None and abort.is_set():
                cancel.set()
            if time.monotonic() - last < every:
                continue
            last = time.monotonic()
            try:
                if not _renew(container, claim, lease):
                    lost.set()
                    cancel.set()
                    return
            except Exception:  # noqa: BLE001 - a missed renewal is retried; the lease has slack
                log.warning("lease renewal of job %s failed", claim.job_id)

    beat = threading.Thread(target=heartbeat, name=f"lease-{claim.job_id}", daemon=True)
    beat.start()
    outputs: Outputs | None = None
    error: str | None = None
    work = Path(tempfile.mkdtemp(prefix="codex-media-"))
    try:
        src = work / ("original" + Path(claim.r2_key).suffix)
        _download(container, claim.r2_key, src)
        outputs = process_file(src, work / "out", ladder=ladder, preset=preset, cancel=cancel)
        _upload(container, claim, outputs, lost)
    except CodexError as exc:
        error = str(exc)
    finally:
        done.set()
        beat.join()
        shutil.rmtree(work, ignore_errors=True)
    if lost.is_set():
        return JobResult(
            claim.media_id, claim.job_id, "lost", "Its lease expired; another worker took it over."
        )
    if abort is not None and abort.is_set() and error is not None:
        _release(container, claim)
        return JobResult(claim.media_id, claim.job_id, "released", "Stopped; the job is queued again.")
    held, error = _finish(container, claim, worker, outputs if error is None else None, error)
    if not held:
        return JobResult(
            claim.media_id, claim.job_id, "lost", "Its lease expired; another worker took it over."
        )
    elapsed = time.monotonic() - started
    if error is not None or outputs is None:
        return JobResult(claim.media_id, claim.job_id, "failed", error, seconds=elapsed)
    return JobResult(
        claim.media_id,
        claim.job_id,
        "ready",
        duration_seconds=outputs.duration_seconds,
        renditions=outputs.renditions,
        thumbnails=sorted(outputs.thumbnails),
        seconds=elapsed,
    )


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_next(
    container: Container,
    *,
    worker: str | None = None,
    lease: float = LEASE_SECONDS,
    only: list[uuid.UUID] | None = None,
    ladder: tuple[Rung, ...] = LADDER,
    preset: str = PRESET,
    abort: threading.Event | None = None,
) -> JobResult | None:
    """Claim and run one job (of `only` items, if given); None when nothing is claimable."""
    if lease < 1:
        raise ValidationError("The lease must be at least 1 second.", field="lease")
    name = worker or default_worker_name()
    claimed = _claim(container, name, lease, only)
    if claimed is None or isinstance(claimed, JobResult):
        return claimed
    return _run_claim(container, claimed, name, lease, ladder, preset, abort)


def process_media(
    container: Container,
    media_refs: list[str],
    *,
    force: bool = False,
    pending: bool = False,
    worker: str | None = None,
    ladder: tuple[Rung, ...] = LADDER,
    on_result: Callable[[JobResult], None] | None = None,
) -> list[JobResult]:
    """`codex media process`: run the jobs of these items (queued first when they have none) or, with
    `pending`, every claimable job, in the foreground. A named item whose job another worker holds
    is left to it and reported as `running` (not ok: it is not ready yet)."""
    from services.core.lookup import parse_uuid
    from services.core.models import MediaItem

    if pending == bool(media_refs):
        raise ValidationError("Give media ids or ask for the pending ones, not both.", field="pending")
    only: list[uuid.UUID] | None = None
    skipped: list[JobResult] = []
    if media_refs:
        ids = list(dict.fromkeys(parse_uuid(ref, "media id") for ref in media_refs))
        with container.uow() as uow:
            for media_id in ids:
                item = uow.session.get(MediaItem, media_id)
                if item is None or item.deleted_at is not None:
                    raise NotFound(f"Media item {media_id} not found.")
            ready = {i for i in ids if str(uow.session.get(MediaItem, i).status) == "ready"}  # type: ignore[union-attr]
            wanted = [i for i in ids if force or i not in ready]
            skipped = [
                JobResult(i, None, "skipped", "Already ready (use --force to process again).")
                for i in ids
                if i not in wanted
            ]
            enqueue_jobs(uow.session, wanted, force=force)
            uow.commit()
        only = wanted
    results: list[JobResult] = list(skipped)
    for r in skipped:
        if on_result:
            on_result(r)
    while only is None or only:
        result = run_next(container, worker=worker, only=only, ladder=ladder)
        if result is None:
            break
        results.append(result)
        if on_result:
            on_result(result)
    if only:
        for late in _elsewhere(container, [i for i in only if i not in {r.media_id for r in results}]):
            results.append(late)
            if on_result:
                on_result(late)
    return results


def _elsewhere(container: Container, media_ids: list[uuid.UUID]) -> list[JobResult]:
    """What became of named items this run could not claim: another worker holds the job (or
    finished it meanwhile)."""
    out = []
    with container.uow() as uow:
        for media_id in media_ids:
            job = latest_job(uow.session, media_id)
            if job is None:  # pragma: no cover - process_media queued one
                continue
            by = f"worker {job.worker}" if job.worker else "another worker"
            if job.status == "running":
                lease = job.lease_expires_at
                until = f"{lease.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if lease else "unknown"
                error = f"being processed by {by} (its lease runs until {until}); left to it."
                out.append(JobResult(media_id, job.id, "running", error))
            elif job.status == "done":
                out.append(JobResult(media_id, job.id, "skipped", f"Processed meanwhile by {by}."))
            else:
                out.append(JobResult(media_id, job.id, job.status, job.error or f"Job {job.status}."))
    return out


def run_worker(
    container: Container,
    *,
    concurrency: int = 1,
    stop: threading.Event,
    abort: threading.Event | None = None,
    lease: float = LEASE_SECONDS,
    poll: float = 2.0,
    exit_when_idle: bool = False,
    on_result: Callable[[JobResult], None] | None = None,
) -> int:
    """`codex media worker`: `concurrency` threads claim and run jobs until `stop` is set (each
    finishes its current job; setting `abort` as well cancels and releases it). Returns jobs run."""
    if not 1 <= concurrency <= 32:
        raise ValidationError("The concurrency must be between 1 and 32.", field="concurrency")
    if poll <= 0:
        raise ValidationError("The poll interval must be positive.", field="poll")
    base = default_worker_name()
    count = 0
    lock = threading.Lock()

    def loop(n: int) -> None:
        nonlocal count
        name = f"{base}/{n}"
        while not stop.is_set():
            try:
                result = run_next(container, worker=name, lease=lease, abort=abort)
            except Exception:  # noqa: BLE001 - a bug or a lost database: the lease brings the job back
                log.exception("media worker %s: job failed unexpectedly", name)
                stop.wait(poll)
                continue
            if result is None:
                if exit_when_idle:
                    return
                stop.wait(poll)
                continue
            with lock:
                count += 1
                if on_result:
                    on_result(result)

    threads = [threading.Thread(target=loop, args=(n,), name=f"media-worker-{n}") for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count


def list_jobs(container: Container, status: str | None = None, limit: int = 100) -> list[JobView]:
    """Jobs newest first, finished ones included."""
    from sqlalchemy import select

    from services.core.models import MediaJob

    if status is not None and status not in JOB_STATUSES:
        raise ValidationError(
            f"The status must be one of {', '.join(JOB_STATUSES)}, not {status!r}.", field="status"
        )
    if limit < 1:
        raise ValidationError("The limit must be at least 1.", field="limit")
    with container.uow() as uow:
        query = select(MediaJob)
        if status:
            query = query.where(MediaJob.status == status)
        query = query.order_by(MediaJob.created_at.desc(), MediaJob.id).limit(limit)
        return [_view(j) for j in uow.session.scalars(query)]


def _view(j: Any) -> JobView:
    return JobView(
        id=j.id,
        media_item_id=j.media_item_id,
        status=j.status,
        force=j.force,
        attempts=j.attempts,
        worker=j.worker,
        lease_expires_at=j.lease_expires_at,
        error=j.error,
        created_at=j.created_at,
        started_at=j.started_at,
        finished_at=j.finished_at,
    )


def latest_job(session: Any, media_id: uuid.UUID) -> JobView | None:
    from sqlalchemy import select

    from services.core.models import MediaJob

    row = session.scalars(
        select(MediaJob)
        .where(MediaJob.media_item_id == media_id)
        .order_by(MediaJob.created_at.desc())
        .limit(1)
    ).first()
    return _view(row) if row is not None else None


def medium_thumbnail(store: Any, media: Any) -> str | None:
    """The key of the item's medium thumbnail when processing made one (mark-ready makes none)."""
    key = r2keys.thumbnail(media.organization_id, media.id, "medium")
    return key if store.head(key) is not None else None
