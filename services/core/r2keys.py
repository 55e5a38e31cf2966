"""The R2 key layout (the roadmap's R2Keys); the web app, streaming URLs and orphan cleanup rely on it.

    {orgId}/originals/{mediaId}/original.{ext}
    {orgId}/hls/{mediaId}/master.m3u8
    {orgId}/thumbnails/{mediaId}/thumb-{small|medium|large}.jpg
    {orgId}/resources/{resourceId}/{filename}
    {orgId}/assets/{assetType}/{filename}

Every segment is sanitised: no `/` or `\\`, no control characters, never `.` or `..`.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Literal

from services.core.errors import ValidationError

ThumbnailSize = Literal["small", "medium", "large"]
THUMBNAIL_SIZES = ("small", "medium", "large")
MAX_FILENAME = 200

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")
_DOTS = re.compile(r"\.{2,}")
_EXT = re.compile(r"^[a-z0-9]{1,10}$")


def sanitize_segment(value: str, what: str = "name") -> str:
    """One path segment: `/`, `\\` and control characters become `_`, runs of dots one dot; empty refused."""
    text = unicodedata.normalize("NFC", str(value))
    text = "".join(
        "_" if _UNSAFE.match(ch) or unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in text
    )
    text = _DOTS.sub(".", text).strip()
    if not text.strip("."):
        raise ValidationError(f"The {what} {value!r} cannot be used in a storage key.")
    return text


def sanitize_filename(filename: str) -> str:
    """A file name safe as the last key segment: directories dropped, unsafe characters replaced."""
    base = re.split(r"[/\\]", str(filename))[-1]
    name = sanitize_segment(base, "file name")
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        name = (
            (stem[: MAX_FILENAME - len(ext) - 1] + dot + ext)
            if dot and len(ext) <= 10
            else name[:MAX_FILENAME]
        )
    return name


def file_extension(filename: str) -> str:
    """The lower-case extension (`mp4`), or a ValidationError when there is none usable."""
    base = re.split(r"[/\\]", str(filename))[-1]
    stem, dot, ext = base.rpartition(".")
    ext = ext.strip().lower()
    if not dot or not stem or not _EXT.match(ext):
        raise ValidationError(f"{base!r} has no usable file extension (like .mp4 or .mp3).")
    return ext


def _id(value: object, what: str) -> str:
    """Ids are UUIDs in our schema; anything else is only accepted as a sanitised segment."""
    if isinstance(value, uuid.UUID):
        return str(value)
    return sanitize_segment(str(value), what)


def media_original(org_id: object, media_id: object, ext: str) -> str:
    ext = ext.lower().lstrip(".")
    if not _EXT.match(ext):
        raise ValidationError(f"{ext!r} is not a usable file extension.")
    return f"{_id(org_id, 'organization id')}/originals/{_id(media_id, 'media id')}/original.{ext}"


def media_hls(org_id: object, media_id: object) -> str:
    return f"{_id(org_id, 'organization id')}/hls/{_id(media_id, 'media id')}/master.m3u8"


def thumbnail(org_id: object, media_id: object, size: ThumbnailSize) -> str:
    if size not in THUMBNAIL_SIZES:
        raise ValidationError(f"Thumbnail size must be one of {', '.join(THUMBNAIL_SIZES)}, not {size!r}.")
    return f"{_id(org_id, 'organization id')}/thumbnails/{_id(media_id, 'media id')}/thumb-{size}.jpg"


def resource(org_id: object, resource_id: object, filename: str) -> str:
    org, res = _id(org_id, "organization id"), _id(resource_id, "resource id")
    return f"{org}/resources/{res}/{sanitize_filename(filename)}"


def asset(org_id: object, asset_type: str, filename: str) -> str:
    org, kind = _id(org_id, "organization id"), sanitize_segment(asset_type, "asset type")
    return f"{org}/assets/{kind}/{sanitize_filename(filename)}"


# Prefix of each kind of object under an organization, for listing and cleanup.
KINDS = ("originals", "hls", "thumbnails", "resources", "assets")


def org_prefix(org_id: object) -> str:
    return f"{_id(org_id, 'organization id')}/"


_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_SEGMENT = r"[^/\x00-\x1f\x7f]+"
# The layout above: (kind, id, rest) of the media and resource objects of an organization.
_LAYOUT = re.compile(
    rf"^{_UUID}/(?:"
    rf"(?P<originals>originals)/(?P<original_id>{_UUID})/original\.[a-z0-9]{{1,10}}"
    rf"|(?P<hls>hls)/(?P<hls_id>{_UUID})/{_SEGMENT}(?:/{_SEGMENT})*"
    rf"|(?P<thumbnails>thumbnails)/(?P<thumb_id>{_UUID})/thumb-(?:{'|'.join(THUMBNAIL_SIZES)})\.jpg"
    rf"|(?P<resources>resources)/{_UUID}/{_SEGMENT}"
    rf")$"
)


@dataclass(frozen=True)
class KeyKind:
    """Where a key sits in the layout; `media_id` is set for derived objects (HLS and thumbnails)."""

    kind: str
    media_id: uuid.UUID | None = None


def classify_key(key: str) -> KeyKind | None:
    """The kind of a media or resource key, or None when the key is outside the layout (left alone)."""
    match = _LAYOUT.match(key)
    if match is None or any(part in (".", "..") for part in key.split("/")):
        return None
    if match.group("originals"):
        return KeyKind("originals")
    if match.group("hls"):
        return KeyKind("hls", uuid.UUID(match.group("hls_id")))
    if match.group("thumbnails"):
        return KeyKind("thumbnails", uuid.UUID(match.group("thumb_id")))
    return KeyKind("resources")
