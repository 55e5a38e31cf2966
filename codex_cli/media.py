"""`codex media`: upload to R2 with progress, the presigned two-step flow, status, list, show, url, delete."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from codex_cli.common import (
    ByOpt,
    DryRunOpt,
    JsonOpt,
    OrgOpt,
    YesOpt,
    confirm,
    container,
    is_tty,
    print_json,
    print_json_line,
    print_table,
)
from services.core.units import format_bytes

if TYPE_CHECKING:
    from services.media.library import MediaView
    from services.media.upload import UploadResult

app = typer.Typer(
    help="Media library: upload videos and audio to R2, presigned URLs, status, listing, deletion.",
    no_args_is_help=True,
)

MediaIdArg = Annotated[
    str, typer.Argument(metavar="MEDIA_ID", help="Media item id (UUID).", show_default=False)
]
ExpiresOpt = Annotated[
    int, typer.Option("--expires", min=1, help="Lifetime of the presigned URL in seconds (max 604800).")
]


# ------------------------------------------------------------------------------- upload listeners


class _LineListener:
    """Piped output: one line per finished file (JSON lines with --json)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._lock = threading.Lock()

    def file_started(self, path: Path, size: int) -> None:
        pass

    def file_progress(self, path: Path, nbytes: int) -> None:
        pass

    def file_finished(self, result: UploadResult) -> None:
        with self._lock:
            if self.as_json:
                print_json_line(result)
            else:
                typer.echo(_result_line(result), err=not result.ok)


def _result_line(r: UploadResult) -> str:
    if r.ok:
        rate = r.size / r.seconds / (1 << 20) if r.seconds > 0 else 0.0
        return f"uploaded {r.path} -> {r.media_id} {r.r2_key} ({format_bytes(r.size)}, {rate:.1f} MiB/s)"
    return f"failed {r.path}: {r.error}"


class _RichListener:
    """On a terminal: a progress bar per file in flight plus a total (bytes, rate, ETA)."""

    def __init__(self, total: int, files: int) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.total_task = self.progress.add_task(f"total ({files} files)", total=total)
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> _RichListener:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def file_started(self, path: Path, size: int) -> None:
        with self._lock:
            self._tasks[str(path)] = self.progress.add_task(path.name[:40], total=size)

    def file_progress(self, path: Path, nbytes: int) -> None:
        task = self._tasks.get(str(path))
        if task is not None:
            self.progress.advance(task, nbytes)
        self.progress.advance(self.total_task, nbytes)

    def file_finished(self, result: UploadResult) -> None:
        with self._lock:
            task = self._tasks.pop(result.path, None)
            sent = 0.0
            if task is not None:
                sent = next(t.completed for t in self.progress.tasks if t.id == task)
                self.progress.remove_task(task)
            if not result.ok:
                # A failed file no longer counts towards the total.
                total = next(t for t in self.progress.tasks if t.id == self.total_task)
                self.progress.update(
                    self.total_task,
                    total=max(0, (total.total or 0) - result.size),
                    completed=max(0, total.completed - sent),
                )
        mark = "[green]✓[/]" if result.ok else "[red]✗[/]"
        self.progress.console.print(f"{mark} {_result_line(result)}", markup=True, highlight=False)


@app.command()
def upload(
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH", help="Video or audio files.", show_default=False)
    ],
    org: OrgOpt,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=64, help="Parallel transfers (files and parts).")
    ] = 10,
    by: ByOpt = None,
    no_resume: Annotated[
        bool,
        typer.Option("--no-resume", help="Start over: abort what an interrupted run of these files left."),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per file (JSON lines).")
    ] = False,
) -> None:
    """Upload videos/audio to the org's media library: multipart, parallel, verified, then recorded.

    An interrupted upload (Ctrl-C, SIGTERM, kill, lost network) keeps what it sent: run the same
    command again and only the missing parts are sent (unless the file changed, or --no-resume)."""
    import signal

    from services.media.upload import upload_media

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the upload as Ctrl-C does: kept for a resume

    previous = signal.signal(signal.SIGTERM, terminated)
    c = container()
    try:
        if json_output or not is_tty():
            listener: Any = _LineListener(json_output)
            batch = upload_media(
                c, paths, org, by=by, concurrency=concurrency, listener=listener, resume=not no_resume
            )
        else:
            total = sum(p.stat().st_size for p in paths if p.is_file())
            with _RichListener(total, len(paths)) as listener:
                batch = upload_media(
                    c, paths, org, by=by, concurrency=concurrency, listener=listener, resume=not no_resume
                )
    finally:
        signal.signal(signal.SIGTERM, previous)
    failed = [r for r in batch.results if not r.ok]
    counts = f"{batch.uploaded} of {len(batch.results)} file(s) uploaded"
    resumable = (
        f"; {batch.resumable} can be resumed: run the same command again (add --no-resume to start over)"
        if batch.resumable
        else ""
    )
    if batch.interrupted:
        typer.echo(f"Interrupted: {counts}, {len(failed)} not{resumable}.", err=True)
    elif failed:
        typer.echo(f"{counts}, {len(failed)} failed{resumable}.", err=True)
    if failed:
        raise typer.Exit(1)


@app.command("presign-upload")
def presign_upload(
    org: OrgOpt,
    filename: Annotated[str, typer.Option("--filename", help="Original file name (its extension is kept).")],
    content_type: Annotated[
        str, typer.Option("--content-type", help="MIME type, video/* or audio/*; send it as Content-Type.")
    ],
    expires: ExpiresOpt = 3600,
    json_output: JsonOpt = False,
) -> None:
    """Step 1 for scripts/browsers: a media id, its R2 key and a presigned PUT URL (1 hour)."""
    from services.media.presigned import presign_upload as presign

    p = presign(container(), org, filename, content_type, expires=expires)
    doc = {
        "uploadUrl": p.upload_url,
        "mediaId": str(p.media_id),
        "r2Key": p.r2_key,
        "expiresIn": p.expires_in,
        "contentType": p.content_type,
    }
    if json_output:
        print_json(doc)
        return
    for name, value in doc.items():
        typer.echo(f"{name:<12}{value}")
    typer.echo(
        f"PUT the file to uploadUrl with header 'Content-Type: {p.content_type}', then run "
        f"`codex media complete {p.media_id} --org {org} --filename ... --size ... --mime {p.content_type}`.",
        err=True,
    )


@app.command()
def complete(
    media_id: MediaIdArg,
    org: OrgOpt,
    filename: Annotated[str, typer.Option("--filename", help="File name given to presign-upload.")],
    size: Annotated[int, typer.Option("--size", help="File size in bytes.")],
    mime: Annotated[str, typer.Option("--mime", help="MIME type given to presign-upload.")],
    by: ByOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Step 2: check the object is in R2 with that size, then record the media item (status uploaded)."""
    from services.media.presigned import complete_upload

    view = complete_upload(container(), media_id, org, filename, size, mime, by=by)
    if json_output:
        print_json(view)
        return
    typer.echo(
        f"Recorded media item {view.id} ({view.type}, {format_bytes(view.file_size_bytes)}) at {view.r2_key}."
    )


def _status_command(
    status: str, media_id: str, by: str | None, reason: str | None, json_output: bool
) -> None:
    from services.media.library import change_status

    change = change_status(container(), media_id, status, by=by, reason=reason)
    if json_output:
        print_json(change)
    elif change.changed:
        typer.echo(f"Media item {change.media.id}: {change.previous} -> {change.media.status}.")
    else:
        typer.echo(f"Media item {change.media.id} is already {change.media.status}; nothing to do.")


@app.command("mark-ready")
def mark_ready(media_id: MediaIdArg, by: ByOpt = None, json_output: JsonOpt = False) -> None:
    """Mark a media item ready for playback without processing it (from uploaded or transcoding; no
    thumbnails or HLS: `codex media process` makes those)."""
    _status_command("ready", media_id, by, None, json_output)


@app.command("mark-failed")
def mark_failed(
    media_id: MediaIdArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why it failed (kept in the audit log).")
    ] = None,
    by: ByOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Mark a media item failed (allowed from any status)."""
    _status_command("failed", media_id, by, reason, json_output)


def _row(v: MediaView) -> list[Any]:
    return [
        v.id,
        v.type,
        v.status,
        format_bytes(v.file_size_bytes),
        v.filename,
        v.created_at,
        v.deleted_at or "",
    ]


@app.command("list")
def list_(
    org: OrgOpt,
    status: Annotated[
        str | None, typer.Option("--status", help="Only this status: uploaded, transcoding, ready, failed.")
    ] = None,
    include_deleted: Annotated[
        bool, typer.Option("--include-deleted", help="Also show soft-deleted items.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="At most this many, newest first.")
    ] = 100,
    json_output: JsonOpt = False,
) -> None:
    """List an organization's media items, newest first."""
    from services.media.library import list_media

    items = list_media(container(), org, status, include_deleted=include_deleted, limit=limit)
    if json_output:
        print_json(items)
        return
    if not items:
        typer.echo("No media items.")
        return
    print_table(["id", "type", "status", "size", "filename", "created", "deleted"], [_row(v) for v in items])


@app.command()
def show(media_id: MediaIdArg, json_output: JsonOpt = False) -> None:
    """Show one media item, the content using it and whether its object is in the bucket."""
    from services.media.library import show_media

    s = show_media(container(), media_id)
    if json_output:
        print_json(s)
        return
    v = s.media
    if s.object_error:
        obj = f"unknown ({s.object_error})"
    elif s.object_exists:
        obj = f"present, {s.object_size} bytes" + (
            "" if s.object_size == v.file_size_bytes else " (SIZE DIFFERS)"
        )
    else:
        obj = "MISSING"
    rows = [
        ("id", v.id),
        ("organization", f"{s.organization_slug} ({v.organization_id})"),
        ("type", v.type),
        ("status", v.status),
        ("filename", v.filename),
        ("mime type", v.mime_type),
        ("size", f"{v.file_size_bytes} bytes ({format_bytes(v.file_size_bytes)})"),
        ("sha256", v.sha256 or "-"),
        ("r2 key", v.r2_key),
        ("object", obj),
        ("used by content", ", ".join(str(i) for i in s.used_by_content) or "-"),
        ("duration", f"{v.duration_seconds} s" if v.duration_seconds is not None else "-"),
        ("processing", (s.job_status or "-") + (f": {s.processing_error}" if s.processing_error else "")),
        ("created", v.created_at),
        ("deleted", v.deleted_at or "-"),
    ]
    for name, value in rows:
        typer.echo(f"{name + ':':<17}{value}")


@app.command()
def url(media_id: MediaIdArg, expires: ExpiresOpt = 3600, json_output: JsonOpt = False) -> None:
    """Print a presigned download URL for the original (valid 1 hour by default)."""
    from services.media.library import media_url

    link = media_url(container(), media_id, expires=expires)
    if json_output:
        print_json({"media_id": media_id, "url": link, "expires_in": expires})
    else:
        typer.echo(link)


@app.command()
def delete(
    media_id: MediaIdArg,
    by: ByOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Soft-delete a media item and remove its objects; refused while content uses it."""
    from services.media.library import delete_media

    c = container()
    if not dry_run:
        preview = delete_media(c, media_id, by=by, dry_run=True)
        media = preview.media
        confirm(f"Delete media item {media.id} ({media.filename}) and {len(preview.keys)} object(s)?", yes)
    result = delete_media(c, media_id, by=by, dry_run=dry_run)
    if json_output:
        print_json(result)
        return
    verb = "Would delete" if dry_run else "Deleted"
    typer.echo(f"{verb} media item {result.media.id} and {len(result.keys)} object(s):")
    for key in result.keys:
        typer.echo(f"  {key}")


# ------------------------------------------------------------------------------- processing


def _job_line(r: Any) -> str:
    if r.outcome == "ready":
        return (
            f"ready {r.media_id}: {r.duration_seconds} s, renditions {', '.join(r.renditions)}, "
            f"{len(r.thumbnails)} thumbnails ({r.seconds:.1f} s)"
        )
    return f"{r.outcome} {r.media_id}: {r.error}"


def _echo_result(json_output: bool) -> Any:
    lock = threading.Lock()

    def show(r: Any) -> None:
        with lock:
            if json_output:
                print_json_line(r)
            else:
                typer.echo(_job_line(r), err=not r.ok)

    return show


@app.command()
def process(
    media_ids: Annotated[
        list[str] | None, typer.Argument(help="Media item ids (UUIDs) to process now.", show_default=False)
    ] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Run every queued job, then exit.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Process ready items again.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per item (JSON lines).")
    ] = False,
) -> None:
    """Probe, thumbnails and HLS for these items (or --pending) in the foreground; exit 4 if any
    failed, or is being processed by another worker (said, with its lease; left to it)."""
    from services.media.jobs import process_media

    results = process_media(
        container(), list(media_ids or []), force=force, pending=pending, on_result=_echo_result(json_output)
    )
    if not results and not json_output:
        typer.echo("Nothing to process.")
    if any(not r.ok for r in results):
        raise typer.Exit(4)


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=32, help="Jobs processed at once.")
    ] = 1,
    lease: Annotated[
        int, typer.Option("--lease", min=1, max=86_400, help="Seconds a job stays ours without a renewal.")
    ] = 120,
    poll: Annotated[
        float, typer.Option("--poll", min=0.1, max=3600, help="Seconds between looks at an empty queue.")
    ] = 2.0,
    exit_when_idle: Annotated[
        bool, typer.Option("--exit-when-idle", help="Stop once the queue is empty.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per job (JSON lines).")
    ] = False,
) -> None:
    """Process queued media jobs until SIGTERM/Ctrl-C (which finish the current jobs; a second one
    releases them to the queue). Run one per machine; they share the queue."""
    import signal

    from services.media.jobs import run_worker

    stop, abort = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            abort.set()
        stop.set()
        typer.echo(
            "Stopping: releasing current jobs." if abort.is_set() else "Stopping after the current jobs.",
            err=True,
        )

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        count = run_worker(
            container(),
            concurrency=concurrency,
            stop=stop,
            abort=abort,
            lease=lease,
            poll=poll,
            exit_when_idle=exit_when_idle,
            on_result=_echo_result(json_output),
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not json_output:
        typer.echo(f"Worker stopped after {count} job(s).", err=True)


@app.command()
def jobs(
    status: Annotated[
        str | None, typer.Option("--status", help="Only this status: queued, running, done, failed.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="At most this many, newest first.")
    ] = 100,
    json_output: JsonOpt = False,
) -> None:
    """List media processing jobs, newest first (finished ones included)."""
    from services.media.jobs import list_jobs

    items = list_jobs(container(), status, limit=limit)
    if json_output:
        print_json(items)
        return
    if not items:
        typer.echo("No media jobs.")
        return
    print_table(
        ["id", "media item", "status", "attempts", "worker", "created", "error"],
        [
            [j.id, j.media_item_id, j.status, j.attempts, j.worker or "", j.created_at, j.error or ""]
            for j in items
        ],
    )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="media")
