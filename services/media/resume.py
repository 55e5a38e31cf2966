"""Resume records: what it takes to continue an interrupted multipart upload, kept under CODEX_HOME.

One small JSON file per (organization, file) in `CODEX_HOME/uploads/` (folder 0700, files 0600: they
name local paths and object keys): the file's path, size and mtime when the upload started, the
object key, the multipart upload id and its part size, and where it goes (endpoint, bucket). A record
is written as soon as the multipart upload exists (so even `kill -9` leaves one), removed when the
upload completes or is aborted, and dropped by `codex cleanup orphans` with the upload it names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

RESUME_DIR = "uploads"


@dataclass(frozen=True)
class ResumeRecord:
    path: str
    size: int
    mtime_ns: int
    organization_id: str
    key: str
    upload_id: str
    part_size: int
    endpoint: str
    bucket: str
    created_at: str = ""

    def same_file(self, size: int, mtime_ns: int) -> bool:
        return self.size == size and self.mtime_ns == mtime_ns


def records_dir(home: Path) -> Path:
    return Path(home) / RESUME_DIR


def _record_path(home: Path, file_path: Path, organization_id: object) -> Path:
    name = hashlib.sha256(f"{organization_id}\0{os.path.realpath(file_path)}".encode()).hexdigest()[:32]
    return records_dir(home) / f"{name}.json"


def load(home: Path, file_path: Path, organization_id: object) -> ResumeRecord | None:
    """The record for this file and organization, or None (also for an unreadable record)."""
    try:
        data = json.loads(_record_path(home, file_path, organization_id).read_text())
        return ResumeRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def save(home: Path, record: ResumeRecord) -> None:
    folder = records_dir(home)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    if not record.created_at:
        record = ResumeRecord(**{**asdict(record), "created_at": datetime.now(UTC).isoformat()})
    target = _record_path(home, Path(record.path), record.organization_id)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(record), fh)
    os.replace(tmp, target)


def delete(home: Path, file_path: Path, organization_id: object) -> None:
    with contextlib.suppress(OSError):
        _record_path(home, file_path, organization_id).unlink()


def any_records(home: Path) -> bool:
    """Whether any resume record exists (one look at the folder, instead of one per file)."""
    folder = records_dir(home)
    return folder.is_dir() and next(folder.glob("*.json"), None) is not None


def iter_records(home: Path) -> Iterator[tuple[Path, ResumeRecord]]:
    folder = records_dir(home)
    if not folder.is_dir():
        return
    for entry in sorted(folder.glob("*.json")):
        try:
            yield entry, ResumeRecord(**json.loads(entry.read_text()))
        except (OSError, ValueError, TypeError):
            continue


def drop_uploads(home: Path, upload_ids: Iterable[str]) -> int:
    """Remove the records of these multipart uploads (aborted elsewhere); returns how many."""
    wanted = set(upload_ids)
    if not wanted:
        return 0
    dropped = 0
    for entry, record in iter_records(home):
        if record.upload_id in wanted:
            with contextlib.suppress(OSError):
                entry.unlink()
                dropped += 1
    return dropped
