"""The R2 key layout the web app, streaming URLs and orphan cleanup depend on."""

from __future__ import annotations

import uuid

import pytest

from services.core import r2keys
from services.core.errors import ValidationError

ORG = uuid.UUID("11111111-1111-1111-1111-111111111111")
MEDIA = uuid.UUID("22222222-2222-2222-2222-222222222222")


def test_key_layout_matches_the_roadmap() -> None:
    assert r2keys.media_original("org-123", "media-456", "mp4") == "org-123/originals/media-456/original.mp4"
    assert (
        r2keys.thumbnail("org-123", "media-456", "medium") == "org-123/thumbnails/media-456/thumb-medium.jpg"
    )
    assert r2keys.resource("org-123", "res-789", "workbook.pdf") == "org-123/resources/res-789/workbook.pdf"
    assert r2keys.media_hls(ORG, MEDIA) == f"{ORG}/hls/{MEDIA}/master.m3u8"
    assert r2keys.asset(ORG, "logos", "logo.png") == f"{ORG}/assets/logos/logo.png"
    assert r2keys.media_original(ORG, MEDIA, ".MP4") == f"{ORG}/originals/{MEDIA}/original.mp4"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("wor\x00k\x1fbook.pdf", "wor_k_book.pdf"),
        ("notes..pdf", "notes.pdf"),
        (".hidden", "_hidden"),
        ("  café menu.pdf ", "café menu.pdf"),
    ],
)
def test_filenames_are_sanitised(filename: str, expected: str) -> None:
    key = r2keys.resource(ORG, MEDIA, filename)
    assert key == f"{ORG}/resources/{MEDIA}/{expected}"
    assert ".." not in key.split("/")


@pytest.mark.parametrize("bad", ["", "..", ".", "/", " "])
def test_unusable_names_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        r2keys.resource(ORG, MEDIA, bad)


def test_segments_cannot_add_directories() -> None:
    assert r2keys.asset(ORG, "logos/../x", "a.png") == f"{ORG}/assets/logos_._x/a.png"
    assert r2keys.media_original("a/b", "c", "mp4") == "a_b/originals/c/original.mp4"
    with pytest.raises(ValidationError):
        r2keys.media_original(ORG, MEDIA, "m/p4")
    with pytest.raises(ValidationError):
        r2keys.thumbnail(ORG, MEDIA, "huge")  # type: ignore[arg-type]


def test_file_extension_needs_a_real_extension() -> None:
    assert r2keys.file_extension("Clip.Final.MOV") == "mov"
    for bad in ("noext", ".mp4", "clip.", "clip.m p4"):
        with pytest.raises(ValidationError):
            r2keys.file_extension(bad)
