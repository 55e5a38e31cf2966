"""Local media files: type detection from the first bytes, the size limits, the SHA-256.

Rules (roadmap P1-CONTENT-001, 9.4): only video/* and audio/*; at most 5 GiB of video and 500 MiB
of audio, checked before a byte is sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from services.core import r2keys
from services.core.errors import ValidationError
from services.core.units import format_bytes

MiB = 1024 * 1024
GiB = 1024 * MiB
VIDEO_MAX_BYTES = 5 * GiB
AUDIO_MAX_BYTES = 500 * MiB

# Formats we name when refusing them (a PDF, an image, an archive, an executable).
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


# The extension stored for each detected type (`original.{ext}`), and the other extensions a file of
# that type may keep (`.m4v` for MP4 video, `.oga` for Ogg audio).
CANONICAL_EXT = {
    "video/mp4": ("mp4", {"m4v"}),
    "video/3gpp": ("3gp", set()),
    "video/quicktime": ("mov", {"qt"}),
    "video/webm": ("webm", set()),
    "video/x-matroska": ("mkv", set()),
    "video/x-msvideo": ("avi", set()),
    "video/ogg": ("ogv", set()),
    "audio/mp4": ("m4a", {"m4b", "mp4"}),
    "audio/wav": ("wav", {"wave"}),
    "audio/mpeg": ("mp3", set()),
    "audio/flac": ("flac", set()),
    "audio/ogg": ("ogg", {"oga", "opus"}),
}
SUPPORTED = "MP4, QuickTime, 3GP, WebM, Matroska, AVI, Ogg, WAV, MP3 or FLAC"


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
        if brand.startswith(b"3g"):
            return "video/3gpp", None
        return "video/mp4", None
    if head[4:8] in (b"moov", b"mdat"):
        return "video/quicktime", None
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ("video/webm" if b"webm" in head else "video/x-matroska"), None
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav", None
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video/x-msvideo", None
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE6 == 0xE2):
        return "audio/mpeg", None
    if head.startswith(b"fLaC"):
        return "audio/flac", None
    if head.startswith(b"OggS"):
        return ("video/ogg" if b"\x80theora" in head else "audio/ogg"), None
    return None, None


def stored_extension(mime: str, name: str) -> str:
    """The file's own extension when it agrees with the detected type, else the type's usual one."""
    canonical, aliases = CANONICAL_EXT[mime]
    ext = Path(name).suffix.lower().lstrip(".")
    return ext if ext == canonical or ext in aliases else canonical


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
    """Type and size checks for one file, done before any byte is sent.

    The first bytes decide the type, whatever the name says; a symlink is followed only to a regular
    file (never to a device, a FIFO or a directory), whose bytes are then checked like any other."""
    import stat

    name = path.name
    try:
        info = path.stat()  # follows symlinks
    except FileNotFoundError:
        kind = "is a broken symlink" if path.is_symlink() else "does not exist"
        raise ValidationError(f"{path} {kind}.") from None
    except OSError as exc:
        raise ValidationError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if not stat.S_ISREG(info.st_mode):
        target = " (a symlink to something that is not a regular file)" if path.is_symlink() else ""
        raise ValidationError(f"{path} is not a regular file{target}.")
    size = info.st_size
    if size == 0:
        raise ValidationError(f"{name} is empty.")
    try:
        sniffed, not_media = _sniff(path)
    except OSError as exc:
        raise ValidationError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if not_media:
        raise ValidationError(f"{name} is {not_media}, not a video or audio file.")
    if sniffed is None:
        raise ValidationError(
            f"{name} is not a video or audio file: its first bytes are not {SUPPORTED} "
            "(the name does not count)."
        )
    media_type = media_kind(sniffed)
    assert media_type is not None
    check_limits(media_type, size, name)
    return MediaFile(
        path=path,
        filename=r2keys.sanitize_filename(name),
        mime_type=sniffed,
        media_type=media_type,
        size=size,
        ext=stored_extension(sniffed, name),
    )


def sha256_file(path: Path, chunk: int = 8 * MiB) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()
