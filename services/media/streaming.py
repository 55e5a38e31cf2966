"""Streaming URLs (the roadmap's getStreamingUrl): check access, then a one-hour presigned URL. For a
ready item with HLS it is a master playlist whose variant and segment URIs are presigned too, so a
player can play it straight from a private bucket; otherwise the original.

The rewritten playlists are stored once per media item and clock hour under
`{org}/hls/{media}/signed/{hour}/`; their inner URLs stay valid for at least an hour after the last
moment they are handed out, and older hours are removed when a new one is written.
"""

from __future__ import annotations

import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.core import r2keys
from services.core.errors import ExternalServiceError, NotFound, PermissionDenied, ValidationError

if TYPE_CHECKING:
    from services.bootstrap import Container
    from services.core.models import MediaItem, User

STREAM_EXPIRES = 3600
_WINDOW = 3600
PLAYLIST = "application/vnd.apple.mpegurl"


@dataclass(frozen=True)
class StreamingUrl:
    url: str
    kind: str  # hls | original
    media_item_id: uuid.UUID
    expires_in: int


def may_stream(session: Any, user: User, media: MediaItem) -> bool:
    """Platform owner, a member of the item's organization, or a completed unrefunded purchase of
    live content that uses the item."""
    from sqlalchemy import exists, select

    from services.core.models import Content, ContentPurchase, OrganizationMember, PurchaseStatus, UserRole

    if user.role == UserRole.platform_owner:
        return True
    member = select(
        exists().where(
            OrganizationMember.organization_id == media.organization_id, OrganizationMember.user_id == user.id
        )
    )
    if session.scalar(member):
        return True
    bought = select(
        exists().where(
            ContentPurchase.customer_id == user.id,
            ContentPurchase.status == PurchaseStatus.completed,
            ContentPurchase.refunded_at.is_(None),
            ContentPurchase.content_id == Content.id,
            Content.media_item_id == media.id,
            Content.deleted_at.is_(None),
        )
    )
    return bool(session.scalar(bought))


def _read(store: Any, key: str) -> str:
    try:
        with urllib.request.urlopen(store.presign_get(key, expires=300), timeout=30) as resp:  # noqa: S310
            return str(resp.read().decode())
    except OSError as exc:
        raise ExternalServiceError(f"Cannot read {key} from the object store ({exc}).") from None


def _rewrite(text: str, sign: Any) -> str:
    """Every URI line of a playlist replaced by sign(uri)."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        out.append(sign(stripped) if stripped and not stripped.startswith("#") else line)
    return "\n".join(out) + "\n"


def _signed_master(container: Container, media: MediaItem, now: float) -> str | None:
    """The key of this hour's signed master playlist (written if needed); None without HLS."""
    store = container.object_store
    master = r2keys.media_hls(media.organization_id, media.id)
    base = master.rsplit("/", 1)[0] + "/"
    window = int(now // _WINDOW)
    signed_prefix = f"{base}signed/{window}/"
    signed_master = signed_prefix + "master.m3u8"
    if store.head(signed_master) is not None:
        return signed_master
    if store.head(master) is None:
        return None
    inner_expires = int((window + 1) * _WINDOW + STREAM_EXPIRES - now)
    with tempfile.TemporaryDirectory(prefix="codex-stream-") as tmp:
        variants: dict[str, str] = {}

        def sign_variant(uri: str) -> str:
            if "://" in uri or uri.startswith("/") or ".." in uri:
                raise ValidationError(f"The master playlist of {media.id} has an unexpected URI {uri!r}.")
            folder = uri.rsplit("/", 1)[0] + "/" if "/" in uri else ""
            text = _read(store, base + uri)
            variants[uri] = _rewrite(text, lambda seg: store.presign_get(base + folder + seg, inner_expires))
            name = uri.replace("/", "-")
            path = Path(tmp) / name
            path.write_text(variants[uri])
            store.put_file(signed_prefix + name, path, PLAYLIST, {})
            return str(store.presign_get(signed_prefix + name, inner_expires))

        rewritten = _rewrite(_read(store, master), sign_variant)
        path = Path(tmp) / "master.m3u8"
        path.write_text(rewritten)
        store.put_file(signed_master, path, PLAYLIST, {})
    stale = [
        o.key
        for page in store.iter_pages(f"{base}signed/")
        for o in page
        if not o.key.startswith(signed_prefix)
    ]
    if stale:
        store.delete_many(stale)
    return signed_master


def streaming_url(container: Container, user: User, media: MediaItem) -> StreamingUrl:
    """A one-hour URL a player can use, after the access check; PermissionDenied without access."""
    from services.core.models import MediaStatus

    with container.uow() as uow:
        allowed = may_stream(uow.session, user, media)
    if not allowed:
        raise PermissionDenied(f"No access: this user may not watch media item {media.id}.")
    store = container.object_store
    if media.status == MediaStatus.ready:
        key = _signed_master(container, media, time.time())
        if key is not None:
            return StreamingUrl(store.presign_get(key, STREAM_EXPIRES), "hls", media.id, STREAM_EXPIRES)
    return StreamingUrl(store.presign_get(media.r2_key, STREAM_EXPIRES), "original", media.id, STREAM_EXPIRES)


def streaming_url_for(
    container: Container, user_ref: str, content_ref: str, org_ref: str | None = None
) -> StreamingUrl:
    """`codex access url`: the user by email or id, the content by id or slug (--org when the slug
    is used in several organizations)."""
    from sqlalchemy import select

    from services.core.lookup import resolve_org, resolve_user
    from services.core.models import Content, MediaItem

    with container.uow() as uow:
        s = uow.session
        user = resolve_user(s, user_ref)
        query = select(Content).where(Content.deleted_at.is_(None))
        try:
            query = query.where(Content.id == uuid.UUID(content_ref))
        except ValueError:
            query = query.where(Content.slug == content_ref)
        if org_ref:
            query = query.where(Content.organization_id == resolve_org(s, org_ref).id)
        found = s.scalars(query.limit(2)).all()
        if not found:
            raise NotFound(f"Content {content_ref!r} not found.")
        if len(found) > 1:
            raise ValidationError(
                f"Several organizations have content {content_ref!r}; name the organization.", field="org"
            )
        media = s.get(MediaItem, found[0].media_item_id)
        if media is None or media.deleted_at is not None:
            raise NotFound(f"The media of content {content_ref!r} was deleted.")
        s.expunge_all()
    return streaming_url(container, user, media)
