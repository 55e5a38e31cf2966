"""The media library: operator status changes (by the rules in status.py), listing, showing,
presigned download URLs and deletion.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.adapters.storage import DEFAULT_EXPIRES
from services.core.errors import Conflict, ExternalServiceError, NotFound, ValidationError

if TYPE_CHECKING:
    from services.bootstrap import Container
    from services.core.models import MediaItem


MAX_URL_EXPIRES = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days


@dataclass(frozen=True)
class MediaView:
    """A media item as commands show it."""

    id: uuid.UUID
    organization_id: uuid.UUID
    type: str
    status: str
    r2_key: str
    filename: str
    mime_type: str
    file_size_bytes: int
    sha256: str | None
    duration_seconds: int | None
    uploaded_by: uuid.UUID | None
    created_at: datetime | None
    updated_at: datetime | None
    deleted_at: datetime | None

    @classmethod
    def of(cls, row: MediaItem) -> MediaView:
        return cls(
            id=row.id,
            organization_id=row.organization_id,
            type=str(row.type.value if hasattr(row.type, "value") else row.type),
            status=str(row.status.value if hasattr(row.status, "value") else row.status),
            r2_key=row.r2_key,
            filename=row.filename,
            mime_type=row.mime_type,
            file_size_bytes=row.file_size_bytes,
            sha256=row.sha256,
            duration_seconds=row.duration_seconds,
            uploaded_by=row.uploaded_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
            deleted_at=row.deleted_at,
        )


@dataclass(frozen=True)
class MediaShow:
    media: MediaView
    organization_slug: str
    used_by_content: list[uuid.UUID]
    object_exists: bool | None
    object_size: int | None
    object_error: str | None = None
    job_status: str | None = None
    processing_error: str | None = None


@dataclass(frozen=True)
class StatusChange:
    media: MediaView
    previous: str
    changed: bool


@dataclass(frozen=True)
class MediaDeletion:
    media: MediaView
    keys: list[str]
    dry_run: bool
    object_errors: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------------- status changes


def _load_for_update(session: Any, media_ref: str) -> MediaItem:
    from sqlalchemy import select

    from services.core.lookup import parse_uuid
    from services.core.models import MediaItem

    media_id = parse_uuid(media_ref, "media id")
    row = session.scalars(select(MediaItem).where(MediaItem.id == media_id).with_for_update()).first()
    if row is None or row.deleted_at is not None:
        raise NotFound(f"Media item {media_id} not found.")
    return row


def change_status(
    container: Container, media_ref: str, status: str, *, by: str | None = None, reason: str | None = None
) -> StatusChange:
    """Move a media item to `status` if the rules in status.py allow it (Conflict otherwise); audited."""
    from services.core.audit import record_audit
    from services.core.lookup import resolve_operator
    from services.media.status import check_status, move

    check_status(status)
    with container.uow() as uow:
        operator = resolve_operator(uow.session, container.settings.operator_email(by))
        row = _load_for_update(uow.session, media_ref)
        previous = str(row.status.value)
        if not move(row, status):
            return StatusChange(media=MediaView.of(row), previous=previous, changed=False)
        row.updated_at = datetime.now(UTC)
        details: dict[str, Any] = {"from": previous, "to": status}
        if reason:
            details["reason"] = reason
        record_audit(uow.session, operator, f"media.{status}", "media_item", row.id, details)
        uow.session.flush()
        view = MediaView.of(row)
        uow.commit()
    return StatusChange(media=view, previous=previous, changed=True)


# ------------------------------------------------------------------------------ list/show/url/delete


def list_media(
    container: Container,
    org_ref: str,
    status: str | None = None,
    *,
    include_deleted: bool = False,
    limit: int = 100,
) -> list[MediaView]:
    from sqlalchemy import select

    from services.core.lookup import resolve_org
    from services.core.models import MediaItem, MediaStatus
    from services.media.status import check_status

    if status is not None:
        check_status(status)
    if limit < 1:
        raise ValidationError("The page size must be at least 1.", field="limit")
    with container.uow() as uow:
        org = resolve_org(uow.session, org_ref)
        query = select(MediaItem).where(MediaItem.organization_id == org.id)
        if status:
            query = query.where(MediaItem.status == MediaStatus(status))
        if not include_deleted:
            query = query.where(MediaItem.deleted_at.is_(None))
        query = query.order_by(MediaItem.created_at.desc(), MediaItem.id).limit(limit)
        return [MediaView.of(row) for row in uow.session.scalars(query)]


def _content_using(session: Any, media_id: uuid.UUID) -> list[uuid.UUID]:
    from sqlalchemy import select

    from services.core.models import Content

    return list(
        session.scalars(
            select(Content.id).where(Content.media_item_id == media_id, Content.deleted_at.is_(None))
        )
    )


def show_media(container: Container, media_ref: str) -> MediaShow:
    """The row, the content using it and whether its object is really in the bucket."""
    from services.core.lookup import parse_uuid
    from services.core.models import MediaItem, Organization
    from services.media.jobs import latest_job

    media_id = parse_uuid(media_ref, "media id")
    with container.uow() as uow:
        row = uow.session.get(MediaItem, media_id)
        if row is None:
            raise NotFound(f"Media item {media_id} not found.")
        view = MediaView.of(row)
        org = uow.session.get(Organization, row.organization_id)
        org_slug = org.slug if org else ""
        used_by = _content_using(uow.session, media_id)
        job = latest_job(uow.session, media_id)
    exists: bool | None = None
    size: int | None = None
    error: str | None = None
    try:
        info = container.object_store.head(view.r2_key)
        exists, size = info is not None, info.size if info else None
    except ExternalServiceError as exc:
        error = str(exc)
    return MediaShow(
        media=view,
        organization_slug=org_slug,
        used_by_content=used_by,
        object_exists=exists,
        object_size=size,
        object_error=error,
        job_status=job.status if job else None,
        processing_error=job.error if job and job.status == "failed" else None,
    )


def media_url(container: Container, media_ref: str, expires: int = DEFAULT_EXPIRES) -> str:
    """A presigned GET URL for the original (1 hour by default)."""
    from services.core.lookup import parse_uuid
    from services.core.models import MediaItem

    if not 1 <= expires <= MAX_URL_EXPIRES:
        raise ValidationError(
            f"The URL lifetime must be between 1 and {MAX_URL_EXPIRES} seconds.", field="expires"
        )
    media_id = parse_uuid(media_ref, "media id")
    with container.uow() as uow:
        row = uow.session.get(MediaItem, media_id)
        if row is None or row.deleted_at is not None:
            raise NotFound(f"Media item {media_id} not found.")
        key = row.r2_key
    return container.object_store.presign_get(key, expires=expires)


def _media_keys(store: Any, view: MediaView) -> list[str]:
    """The original plus anything derived from it (HLS renditions, thumbnails)."""
    keys = [view.r2_key]
    for kind in ("hls", "thumbnails"):
        prefix = f"{view.organization_id}/{kind}/{view.id}/"
        for page in store.iter_pages(prefix):
            keys.extend(o.key for o in page)
    return keys


def delete_media(
    container: Container, media_ref: str, *, by: str | None = None, dry_run: bool = False
) -> MediaDeletion:
    """Soft-delete the row and remove its objects; refused while live content uses the item."""
    from services.core.audit import record_audit
    from services.core.lookup import resolve_operator

    store = container.object_store
    with container.uow() as uow:
        operator = resolve_operator(uow.session, container.settings.operator_email(by))
        row = _load_for_update(uow.session, media_ref)
        used_by = _content_using(uow.session, row.id)
        if used_by:
            ids = ", ".join(str(i) for i in used_by[:3])
            raise Conflict(
                f"Media item {row.id} is used by content {ids}; delete or change that content first."
            )
        view = MediaView.of(row)
        keys = _media_keys(store, view)
        if dry_run:
            return MediaDeletion(media=view, keys=keys, dry_run=True)
        row.deleted_at = datetime.now(UTC)
        record_audit(uow.session, operator, "media.delete", "media_item", row.id, {"keys": keys})
        uow.session.flush()
        view = MediaView.of(row)
        uow.commit()
    # The row is gone for everyone first; objects go after the commit. If removal fails, the
    # soft-deleted row still names the key, and `codex cleanup orphans` can finish the job.
    result = store.delete_many(keys)
    deletion = MediaDeletion(media=view, keys=keys, dry_run=False, object_errors=result.errors)
    if result.errors:
        key, message = result.errors[0]
        raise ExternalServiceError(
            f"Media item {view.id} was deleted but its object {key} could not be removed ({message}); "
            "`codex cleanup orphans` will remove it."
        )
    return deletion
