"""The two-step (browser) upload: a presigned PUT URL, then `complete` checks the object and adds the row."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.adapters.storage import DEFAULT_EXPIRES
from services.core import r2keys
from services.core.errors import Conflict, ExternalServiceError, ValidationError
from services.media.files import MediaFile, check_limits, media_kind
from services.media.library import MAX_URL_EXPIRES, MediaView
from services.media.upload import SHA256_METADATA, insert_rows, media_values

if TYPE_CHECKING:
    from services.bootstrap import Container


@dataclass(frozen=True)
class PresignedUpload:
    upload_url: str
    media_id: uuid.UUID
    r2_key: str
    expires_in: int
    content_type: str


# ------------------------------------------------------------------------------ two-step (browser)


def _check_mime(mime: str) -> str:
    mime = mime.strip().lower()
    if not media_kind(mime):
        raise ValidationError(f"Content type {mime!r} is not allowed: only video/* and audio/* files.")
    return mime


def presign_upload(
    container: Container, org_ref: str, filename: str, content_type: str, expires: int = DEFAULT_EXPIRES
) -> PresignedUpload:
    """Step 1 of the browser flow: a media id, its key, and a presigned PUT URL (1 hour by default)."""
    from services.core.lookup import resolve_org

    mime = _check_mime(content_type)
    ext = r2keys.file_extension(filename)
    if not 1 <= expires <= MAX_URL_EXPIRES:
        raise ValidationError(
            f"The URL lifetime must be between 1 and {MAX_URL_EXPIRES} seconds.", field="expires"
        )
    with container.uow() as uow:
        org_id = resolve_org(uow.session, org_ref).id
    media_id = uuid.uuid4()
    key = r2keys.media_original(org_id, media_id, ext)
    url = container.object_store.presign_put(key, mime, expires=expires)
    return PresignedUpload(
        upload_url=url, media_id=media_id, r2_key=key, expires_in=expires, content_type=mime
    )


def complete_upload(
    container: Container,
    media_ref: str,
    org_ref: str,
    filename: str,
    size: int,
    mime: str,
    *,
    by: str | None = None,
) -> MediaView:
    """Step 2: the object must exist with the stated size; then the row is written (status uploaded)."""
    from services.core.lookup import parse_uuid, resolve_operator, resolve_org
    from services.core.models import MediaItem

    media_id = parse_uuid(media_ref, "media id")
    mime = _check_mime(mime)
    media_type = media_kind(mime)
    assert media_type is not None
    if size <= 0:
        raise ValidationError("The size must be a positive number of bytes.", field="size")
    check_limits(media_type, size, filename)
    ext = r2keys.file_extension(filename)
    with container.uow() as uow:
        org_id = resolve_org(uow.session, org_ref).id
        operator = container.settings.operator_email(by)  # optional here: who uploaded, when known
        uploader = resolve_operator(uow.session, operator).id if operator else None
        if uow.session.get(MediaItem, media_id) is not None:
            raise Conflict(f"Media item {media_id} already exists; the upload was already completed.")
    key = r2keys.media_original(org_id, media_id, ext)
    info = container.object_store.head(key)
    if info is None:
        raise ExternalServiceError(f"File upload not completed: nothing at {key}.")
    if info.size != size:
        raise ExternalServiceError(
            f"File upload not completed: the object has {info.size} bytes, not the {size} given."
        )
    digest = info.metadata.get(SHA256_METADATA)
    f = MediaFile(
        path=Path(filename),
        filename=r2keys.sanitize_filename(filename),
        mime_type=mime,
        media_type=media_type,
        size=size,
        ext=ext,
    )
    values = media_values(media_id, org_id, uploader, key, f, digest)
    return insert_rows(container, [values])[media_id]
