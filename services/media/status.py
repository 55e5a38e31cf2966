"""The media status rules, one set for operators (`mark-ready`, `mark-failed`) and the job queue:

    uploaded    -> transcoding  a worker claimed its job
    uploaded    -> ready        `mark-ready` (no processing: no thumbnails, no HLS)
    uploaded    -> failed       `mark-failed`; the queue gave up on its job
    transcoding -> ready        processing finished; `mark-ready`
    transcoding -> failed       processing failed; the queue gave up; `mark-failed`
    transcoding -> uploaded     a stopping worker gave the job back to the queue
    ready       -> failed       `mark-failed`
    failed      -> transcoding  a worker claimed a new job for it (`codex media process` again)

A forced re-run of a ready item keeps it `ready` while it runs and when it fails (it stays playable),
so `ready -> transcoding` is not a move. A failed item becomes ready only by processing it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.core.errors import Conflict, ValidationError

if TYPE_CHECKING:
    from services.core.models import MediaItem

MEDIA_STATUSES = ("uploaded", "transcoding", "ready", "failed")

TRANSITIONS: dict[str, frozenset[str]] = {
    "uploaded": frozenset({"transcoding", "ready", "failed"}),
    "transcoding": frozenset({"ready", "failed", "uploaded"}),
    "ready": frozenset({"failed"}),
    "failed": frozenset({"transcoding"}),
}


def _name(status: object) -> str:
    return str(getattr(status, "value", status))


def check_status(status: str) -> str:
    if status not in TRANSITIONS:
        raise ValidationError(
            f"The status must be one of {', '.join(MEDIA_STATUSES)}, not {status!r}.", field="status"
        )
    return status


def can_move(current: object, target: object) -> bool:
    """Whether a media item may go from `current` to `target` (staying put is always allowed)."""
    now, to = _name(current), _name(target)
    return now == to or to in TRANSITIONS.get(now, frozenset())


def move(item: MediaItem, target: str) -> bool:
    """Set `item.status` to `target` when the rules allow it; True when it changed. Conflict when the
    move is not allowed (the item keeps its status)."""
    from services.core.models import MediaStatus

    check_status(target)
    current = _name(item.status)
    if current == target:
        return False
    if not can_move(current, target):
        raise Conflict(f"Media item {item.id} is {current}; it cannot become {target}.")
    item.status = MediaStatus(target)
    return True
