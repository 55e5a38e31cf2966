"""Uploads from a shell to the object store: many files at once, each verified before its
`media_items` row is written, rows written by group commit.

The SHA-256 is computed while the file is read for sending (no pass over the file before the first
byte goes out) and stored on the row; single-request uploads also carry it as object metadata. An
interrupted multipart upload is kept with a resume record under CODEX_HOME (services.media.resume):
running the same upload again sends only the parts that are missing.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from services.adapters.storage import (
    FileChanged,
    NoSuchBucket,
    PutResult,
    ResumePoint,
    UploadCancelled,
    UploadGone,
)
from services.core import r2keys
from services.core.errors import CodexError, Conflict, ExternalServiceError, NotFound, ValidationError
from services.media import resume as records
from services.media import rows
from services.media.files import MediaFile, inspect_file
from services.media.library import MediaView

if TYPE_CHECKING:
    from services.bootstrap import Container


SHA256_METADATA = "sha256"
DEFAULT_UPLOAD_CONCURRENCY = 10  # as aws-cli (max_concurrent_requests)


class UploadListener(Protocol):
    """What `upload_media` reports while it works; called from worker threads."""

    def file_started(self, path: Path, size: int) -> None: ...
    def file_progress(self, path: Path, nbytes: int) -> None: ...
    def file_finished(self, result: UploadResult) -> None: ...


@dataclass
class UploadResult:
    """One file's outcome; `error` is None when the upload succeeded and the row exists."""

    path: str
    ok: bool
    media_id: uuid.UUID | None = None
    r2_key: str | None = None
    filename: str | None = None
    mime_type: str | None = None
    size: int = 0
    sha256: str | None = None
    seconds: float = 0.0
    error: str | None = None
    sent_bytes: int = 0  # bytes sent in this run (less than `size` when resumed)
    resumed: bool = False  # parts uploaded by an earlier, interrupted run were kept
    resumable: bool = False  # failed, but its parts are kept: running the same upload resumes it


@dataclass
class UploadBatch:
    organization_id: uuid.UUID
    results: list[UploadResult] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(r.ok for r in self.results)

    @property
    def uploaded(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def resumable(self) -> int:
        return sum(1 for r in self.results if r.resumable)


# ------------------------------------------------------------------------------------------ upload


def upload_media(
    container: Container,
    paths: Sequence[Path],
    org_ref: str,
    *,
    by: str | None = None,
    concurrency: int = DEFAULT_UPLOAD_CONCURRENCY,
    listener: UploadListener | None = None,
    part_size: int | None = None,
    resume: bool = True,
) -> UploadBatch:
    """Upload files to `{org}/originals/{mediaId}/original.{ext}`, verify each object, then write its row.

    All files are checked (type, size) before anything is sent. Files go up in parallel; a failed
    file writes no row. An interrupted (or network-failed) multipart upload is kept with its resume
    record, and the same call later continues it when the file is unchanged (`resume=False` starts
    over, aborting it); other failures abort it. Each file's outcome is returned.
    """
    if concurrency < 1 or concurrency > 64:
        raise ValidationError("The concurrency must be between 1 and 64.", field="concurrency")
    if not paths:
        raise ValidationError("Give at least one file to upload.")
    problems = []
    files: list[MediaFile] = []
    for path in paths:
        try:
            files.append(inspect_file(Path(path)))
        except ValidationError as exc:
            problems.append(str(exc).rstrip("."))
    if problems:
        raise ValidationError("Nothing was uploaded: " + "; ".join(problems) + ".")

    # Plain SQL on one connection of its own, no SQLAlchemy: see services.media.rows.
    conn = container.connect()
    inserter = _GroupInserter(container, conn)  # writes the rows on this connection, closes it
    try:
        org_id = rows.find_org_id(conn, org_ref)
        uploader = rows.find_operator_id(conn, container.settings.operator_email(by))
        store = container.object_store
    except BaseException:
        inserter.close()
        raise

    batch = UploadBatch(organization_id=org_id)
    cancel = threading.Event()
    file_workers = min(len(files), concurrency)
    part_concurrency = max(1, concurrency // file_workers)

    records_present = records.any_records(container.settings.codex_home)

    def one(f: MediaFile) -> Future[UploadResult]:
        return _upload_one(
            inserter,
            store,
            container.settings.codex_home,
            f,
            org_id,
            uploader,
            part_concurrency,
            part_size,
            listener,
            cancel,
            resume,
            records_present,
        )

    pool = ThreadPoolExecutor(max_workers=file_workers, thread_name_prefix="codex-upload")
    futures: dict[Future[Future[UploadResult]], MediaFile] = {}
    try:
        futures = {pool.submit(one, f): f for f in files}
        # Waiting in short slices keeps the main thread responsive to Ctrl-C.
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.5)
    except KeyboardInterrupt:
        cancel.set()  # every worker stops, keeps its multipart upload for a resume, writes no row
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        # Files sent and verified still get their rows (their objects would otherwise be orphans).
        inserter.close()
    batch.interrupted = cancel.is_set()
    for future, f in futures.items():
        if future.cancelled():
            result = UploadResult(
                path=str(f.path), ok=False, filename=f.filename, error="not started: interrupted"
            )
            if listener:
                listener.file_finished(result)
        else:
            result = future.result().result()
        batch.results.append(result)
    return batch


def _upload_one(
    inserter: _GroupInserter,
    store: Any,
    home: Path,
    f: MediaFile,
    org_id: uuid.UUID,
    uploader: uuid.UUID | None,
    concurrency: int,
    part_size: int | None,
    listener: UploadListener | None,
    cancel: threading.Event,
    resume: bool,
    records_present: bool = True,
) -> Future[UploadResult]:
    """Send one file and hand its row to the group writer; the returned future holds the outcome once
    the row is committed (or the file failed), so the worker moves on to the next file meanwhile."""
    started = time.monotonic()
    result = UploadResult(path=str(f.path), ok=False, filename=f.filename, mime_type=f.mime_type, size=f.size)
    resumable_store = hasattr(store, "endpoint_url")  # S3: multipart uploads outlive the process
    look = resumable_store and records_present
    record = _usable_record(store, home, f, org_id, resume) if look else None
    media_id = _media_id_of(record.key) if record else uuid.uuid4()
    key = record.key if record else r2keys.media_original(org_id, media_id, f.ext)
    point = ResumePoint(record.upload_id, record.part_size) if record else None
    stat = f.path.stat()
    has_record = record is not None
    attempted = completed = False
    row: Future[MediaView] | None = None

    def remember(p: ResumePoint) -> None:
        nonlocal has_record
        records.save(
            home,
            records.ResumeRecord(
                path=str(f.path.resolve()),
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
                organization_id=str(org_id),
                key=key,
                upload_id=p.upload_id,
                part_size=p.part_size,
                endpoint=str(getattr(store, "endpoint_url", "")),
                bucket=str(getattr(store, "bucket", "")),
            ),
        )
        has_record = True

    try:
        if cancel.is_set():
            raise UploadCancelled(key)
        if listener:
            listener.file_started(f.path, f.size)
        on_progress = (lambda n: listener.file_progress(f.path, n)) if listener else None
        extra = {"part_size": part_size} if part_size else {}

        def put(point: ResumePoint | None) -> PutResult:
            return cast(
                PutResult,
                store.put_file(
                    key,
                    f.path,
                    f.mime_type,
                    {},
                    on_progress=on_progress,
                    concurrency=concurrency,
                    cancel=cancel,
                    digest_metadata=SHA256_METADATA,
                    resume=point,
                    on_multipart=remember if resumable_store else None,
                    **extra,
                ),
            )

        attempted = True
        try:
            put_result = put(point)
        except UploadGone:
            # completed or aborted meanwhile (e.g. by `codex cleanup orphans`): start over under a new
            # key, so that an object an earlier run completed is never overwritten
            records.delete(home, f.path, org_id)
            has_record = False
            media_id = uuid.uuid4()
            key = r2keys.media_original(org_id, media_id, f.ext)
            put_result = put(None)
        completed = True
        result.sha256, result.sent_bytes, result.resumed = (
            put_result.sha256,
            put_result.sent_bytes,
            put_result.resumed,
        )
        _verify_object(store, key, f.size, put_result)
        row = inserter.submit(media_values(media_id, org_id, uploader, key, f, put_result.sha256))
    except (UploadCancelled, CancelledError, KeyboardInterrupt):
        cancel.set()  # one interrupted file stops the batch, as Ctrl-C does
        if has_record and not completed:
            result.resumable = True
            result.error = "interrupted; the parts sent are kept: run the same upload again to resume"
        else:
            result.error = "interrupted; nothing was kept"
    except (CodexError, OSError) as exc:
        result.error = str(exc) if not isinstance(exc, OSError) else f"cannot read the file ({exc.strerror})"
        if has_record and not completed and isinstance(exc, ExternalServiceError):
            result.resumable = not isinstance(exc, FileChanged)
            if result.resumable:
                result.error = result.error.rstrip(".") + "; run the same upload again to resume."
    except Exception as exc:  # noqa: BLE001 - one file's unexpected failure must not hide the others
        result.error = f"unexpected {type(exc).__name__}"
    outcome: Future[UploadResult] = Future()

    def finish() -> None:
        try:
            if has_record and not result.resumable:
                records.delete(home, f.path, org_id)  # completed, or aborted by put_file
            failed = not result.ok and attempted and not result.resumable
            if failed and not _discard(store, key) and result.error:
                result.error = result.error.rstrip(".") + (
                    f"; its object {key} could not be removed (`codex cleanup orphans` removes it later)."
                )
            result.seconds = time.monotonic() - started
            if listener:
                listener.file_finished(result)
        except BaseException as exc:  # noqa: BLE001 - handed to upload_media, which re-raises it
            outcome.set_exception(exc)
        else:
            outcome.set_result(result)

    def row_written(written: Future[MediaView]) -> None:
        exc = written.exception()
        if exc is None:
            result.ok, result.media_id, result.r2_key = True, media_id, key
        elif isinstance(exc, CodexError):
            result.error = str(exc)
        else:
            result.error = f"unexpected {type(exc).__name__}"
        finish()

    if row is None:
        finish()
    else:
        row.add_done_callback(row_written)  # in the writer thread, once the group is committed
    return outcome


def _media_id_of(key: str) -> uuid.UUID:
    """The media id in `{org}/originals/{mediaId}/original.{ext}`."""
    return uuid.UUID(key.split("/")[2])


def _is_original_key(key: str, org_id: uuid.UUID) -> bool:
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != str(org_id) or parts[1] != "originals":
        return False
    try:
        _media_id_of(key)
    except ValueError:
        return False
    return r2keys.classify_key(key) is not None


def _usable_record(
    store: Any, home: Path, f: MediaFile, org_id: uuid.UUID, resume: bool
) -> records.ResumeRecord | None:
    """The resume record to continue, if any; a stale one (file changed, --no-resume, another bucket)
    is removed and its multipart upload aborted."""
    record = records.load(home, f.path, org_id)
    if record is None:
        return None
    stat = f.path.stat()
    same_place = record.endpoint == str(getattr(store, "endpoint_url", "")) and record.bucket == str(
        getattr(store, "bucket", "")
    )
    key_ok = _is_original_key(record.key, org_id)
    if resume and same_place and key_ok and record.same_file(stat.st_size, stat.st_mtime_ns):
        return record
    if same_place:
        with contextlib.suppress(ExternalServiceError):
            store.abort_multipart_upload(record.key, record.upload_id)
    records.delete(home, f.path, org_id)
    return None


def _discard(store: Any, key: str) -> bool:
    """Remove an object a failed upload may have completed, so nothing is left without a row."""
    try:
        store.delete(key)
    except NoSuchBucket:
        return True  # no bucket, no object
    except ExternalServiceError:
        return False  # `codex cleanup orphans` removes it later; the result says so
    return True


def _verify_object(store: Any, key: str, size: int, put: PutResult) -> None:
    """The object is complete with the file's size. A single-request upload is verified by its own
    answer (the store read exactly `size` bytes, checked against the request's SHA-256 checksum where
    the server checks one): no HEAD. An assembled multipart object is read back once (HEAD): that is
    the only check of its size."""
    if put.upload_id is None:
        if put.size != size:
            raise ExternalServiceError(
                f"Upload verification failed: the object has {put.size} bytes, the file {size}."
            )
        return
    info = store.head(key)
    if info is None:
        raise ExternalServiceError("File upload not completed: the object is not in the bucket.")
    if info.size != size:
        raise ExternalServiceError(
            f"Upload verification failed: the object has {info.size} bytes, the file {size}."
        )


def media_values(
    media_id: uuid.UUID,
    org_id: uuid.UUID,
    uploader: uuid.UUID | None,
    key: str,
    f: MediaFile,
    digest: str | None,
) -> dict[str, Any]:
    return {
        "id": media_id,
        "organization_id": org_id,
        "uploaded_by": uploader,
        "type": f.media_type,
        "status": "uploaded",
        "r2_key": key,
        "filename": f.filename,
        "mime_type": f.mime_type,
        "file_size_bytes": f.size,
        "sha256": digest,
    }


def insert_rows(container: Container, values: list[dict[str, Any]]) -> dict[uuid.UUID, MediaView]:
    """Insert media rows (and their processing jobs) in one transaction on a connection of their own."""
    conn = container.connect()
    try:
        return _insert(container, conn, values)
    finally:
        conn.close()


def _insert(container: Container, conn: Any, values: list[dict[str, Any]]) -> dict[uuid.UUID, MediaView]:
    """rows.insert_media; a failing database (lost connection, server gone) is one sentence with the
    password masked."""
    import psycopg

    from services.adapters.db import connection_error

    try:
        return rows.insert_media(conn, values)
    except psycopg.Error as exc:
        raise connection_error(container.database_url, exc) from None


class _GroupInserter:
    """Group commit for the rows of a many-file upload: one writer thread inserts every row handed
    over since its last write in one statement and one transaction, so 200 small files cost a few
    dozen round trips instead of 200 transactions - and the upload workers go on sending the next
    file instead of waiting for the database. A row's future is resolved once it is committed. A
    group refused by a rule is retried row by row, so one bad row cannot fail the others; a failing
    database fails the whole group at once."""

    def __init__(self, container: Container, conn: Any) -> None:
        self._container = container
        self._conn = conn  # the writer's own (psycopg, autocommit); replaced if the server drops it
        self._lock = threading.Condition()  # guards _pending and _closed
        self._turn = threading.Lock()  # held while a group is taken and written
        self._pending: list[tuple[dict[str, Any], Future[MediaView]]] = []
        self._closed = False
        self._writer: threading.Thread | None = None

    def submit(self, values: dict[str, Any]) -> Future[MediaView]:
        """Queue a row; the future holds its MediaView once committed, or the error that refused it."""
        mine: Future[MediaView] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the row writer is closed")
            self._pending.append((values, mine))
            if self._writer is None:
                self._writer = threading.Thread(target=self._run, name="codex-rows", daemon=True)
                self._writer.start()
            self._lock.notify()
        return mine

    def insert(self, values: dict[str, Any]) -> MediaView:
        return self.submit(values).result()

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        with self._lock:
            self._closed = True
            self._lock.notify()
            writer = self._writer
        if writer is not None:
            writer.join()
        self._conn.close()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait()
                if not self._pending:
                    return  # closed, nothing left
            with self._turn:
                with self._lock:
                    group, self._pending = self._pending, []
                self._write(group)

    def _insert(self, values: list[dict[str, Any]]) -> dict[uuid.UUID, MediaView]:
        if self._conn.broken or self._conn.closed:
            self._conn.close()
            self._conn = self._container.connect()
        return _insert(self._container, self._conn, values)

    def _write(self, group: list[tuple[dict[str, Any], Future[MediaView]]]) -> None:
        try:
            views = self._insert([values for values, _ in group])
        except (Conflict, NotFound) as exc:  # one row broke a rule: the others may still be fine
            if len(group) == 1:
                group[0][1].set_exception(exc)
                return
            for values, future in group:
                try:
                    view = self._insert([values])[values["id"]]
                except Exception as exc:  # noqa: BLE001 - handed to the worker that owns the row
                    future.set_exception(exc)
                else:
                    future.set_result(view)
            return
        except Exception as exc:  # noqa: BLE001 - the database itself failed: every row of the group did
            for _, future in group:
                future.set_exception(exc)
            return
        for values, future in group:
            future.set_result(views[values["id"]])
