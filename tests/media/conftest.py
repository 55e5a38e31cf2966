"""Helpers for media tests: small files that look like real MP4 video and MP3 audio."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

MP4_HEADER = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
MP3_HEADER = b"ID3\x04\x00\x00\x00\x00\x00\x00"


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[..., Path]:
    """make_file("clip.mp4", size) -> a file of that size with a real container header."""

    def make(name: str, size: int = 4096, header: bytes | None = None) -> Path:
        if header is None:
            header = MP3_HEADER if name.endswith(".mp3") else MP4_HEADER
        path = tmp_path / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(header + os.urandom(max(0, size - len(header))))
        return path

    return make
