"""Local media files: type detection from the first bytes, the size limits, the SHA-256.

Rules (roadmap P1-CONTENT-001, 9.4): only video/* and audio/*; at most 5 GiB of video and 500 MiB
of audio, checked before a byte is sent.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.core import r2keys
from services.core.errors import ValidationError
from services.core.units import format_bytes

if TYPE_CHECKING:
    pass


MiB = 1024 * 1024
GiB = 1024 * MiB
VIDEO_MAX_BYTES = 5 * GiB
AUDIO_MAX_BYTES = 500 * MiB

# Signatures of common media containers and of formats we must refuse even with a media extension.
_EXTRA_TYPES = {
    ".mkv": "video/x-matroska",
    ".m4a": "audio/mp4",
    ".m4v": "video/x-m4v",
    ".flac": "audio/flac",
    ".opus": "audio/ogg",
    ".aac": "audio/aac",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".ogv": "video/ogg",
}
_NOT_MEDIA_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "an executable"),
)


@dataclass(frozen=True)
class MediaFile:
    """A local file that passed the checks: its type, size and target extension."""

    path: Path
    filename: str
    mime_type: str
    media_type: str  # "video" | "audio"
    size: int
    ext: str


# ------------------------------------------------------------------------------------ file checks


def _sniff(path: Path) -> tuple[str | None, str | None]:
    """(media mime type, description of a non-media format) from the first bytes of the file."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    for magic, what in _NOT_MEDIA_MAGIC:
        if head.startswith(magic):
            return None, what
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4", None
        if brand == b"qt  ":
            return "video/quicktime", None
        return "video/mp4", None
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ("video/webm" if b"webm" in head else "video/x-matroska"), None
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav", None
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video/x-msvideo", None
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF2):
        return "audio/mpeg", None
    if head.startswith(b"fLaC"):
        return "audio/flac", None
    if head.startswith(b"OggS"):
        return "audio/ogg", None
    return None, None


def _guess_by_name(name: str) -> str | None:
    ext = Path(name).suffix.lower()
    return _EXTRA_TYPES.get(ext) or mimetypes.guess_type(name, strict=False)[0]


def media_kind(mime: str) -> str | None:
    major = mime.split("/", 1)[0]
    return major if major in ("video", "audio") else None


def check_limits(media_type: str, size: int, name: str) -> None:
    limit = VIDEO_MAX_BYTES if media_type == "video" else AUDIO_MAX_BYTES
    if size > limit:
        raise ValidationError(
            f"{name} is {format_bytes(size)}, over the {format_bytes(limit)} limit for {media_type} files."
        )


def inspect_file(path: Path) -> MediaFile:
    """Type and size checks for one file, done before any byte is sent."""
    name = path.name
    if not path.exists():
        raise ValidationError(f"{path} does not exist.")
    if not path.is_file():
        raise ValidationError(f"{path} is not a regular file.")
    size = path.stat().st_size
    if size == 0:
        raise ValidationError(f"{name} is empty.")
    sniffed, not_media = _sniff(path)
    if not_media:
        raise ValidationError(f"{name} is {not_media}, not a video or audio file.")
    by_name = _guess_by_name(name)
    mime = by_name if by_name and media_kind(by_name) else sniffed
    if not mime or not media_kind(mime):
        shown = by_name or "unknown type"
        raise ValidationError(f"{name} is not a video or audio file ({shown}).")
    media_type = media_kind(mime)
    assert media_type is not None
    check_limits(media_type, size, name)
    try:
        ext = r2keys.file_extension(name)
    except ValidationError:
        guessed = mimetypes.guess_extension(mime, strict=False) or ".bin"
        ext = guessed.lstrip(".")
    return MediaFile(
        path=path,
        filename=r2keys.sanitize_filename(name),
        mime_type=mime,
        media_type=media_type,
        size=size,
        ext=ext,
    )


def sha256_file(path: Path, chunk: int = 8 * MiB) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()
