"""The first bytes decide a media file's type, whatever its name; symlinks lead only to regular files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from services.core import models as m
from services.core.errors import ValidationError
from services.media.files import inspect_file
from tests.factories import make_org
from tests.media.conftest import MP3_HEADER, MP4_HEADER


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data + os.urandom(256))
    return path


@pytest.mark.parametrize(
    ("name", "head", "mime", "ext"),
    [
        ("clip.mp4", MP4_HEADER, "video/mp4", "mp4"),
        ("clip.txt", MP4_HEADER, "video/mp4", "mp4"),  # MP4 bytes named .txt are stored as MP4
        ("clip.m4v", MP4_HEADER, "video/mp4", "m4v"),  # an alias of the detected type is kept
        ("song.mp4", MP3_HEADER, "audio/mpeg", "mp3"),  # the name says video, the bytes say MP3
        ("noext", b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "audio/mp4", "m4a"),
        ("talk.webm", b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm", "video/webm", "webm"),
        ("a.wav", b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav", "wav"),
        ("b.ogg", b"OggS\x00\x02", "audio/ogg", "ogg"),
    ],
)
def test_type_and_stored_extension_follow_the_first_bytes(
    tmp_path: Path, name: str, head: bytes, mime: str, ext: str
) -> None:
    media = inspect_file(_write(tmp_path / name, head))
    assert (media.mime_type, media.ext, media.filename) == (mime, ext, name)


@pytest.mark.parametrize(
    ("name", "head", "message"),
    [
        (
            "movie.mp4",
            b"just some text, not a movie\n",
            "movie.mp4 is not a video or audio file: its first bytes",
        ),
        ("movie.mp4", b"%PDF-1.7", "movie.mp4 is a PDF document"),
        ("song.mp3", b"\x7fELF\x02\x01", "song.mp3 is an executable"),
        ("clip.mov", b"I'm free to go", "clip.mov is not a video or audio file"),
    ],
)
def test_files_that_do_not_start_like_media_are_refused_whatever_their_name(
    tmp_path: Path, name: str, head: bytes, message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        inspect_file(_write(tmp_path / name, head))
    assert message in str(refused.value)


def test_symlinks_are_followed_only_to_regular_media_files(tmp_path: Path) -> None:
    real = _write(tmp_path / "real.bin", MP4_HEADER)
    (tmp_path / "ok.mp4").symlink_to(real)
    assert inspect_file(tmp_path / "ok.mp4").mime_type == "video/mp4"
    passwd = tmp_path / "passwd.mp4"
    passwd.symlink_to("/etc/passwd")
    with pytest.raises(ValidationError, match="passwd.mp4 is not a video or audio file"):
        inspect_file(passwd)
    device = tmp_path / "zero.mp4"
    device.symlink_to("/dev/zero")
    with pytest.raises(ValidationError, match="is not a regular file \\(a symlink to something"):
        inspect_file(device)
    folder = tmp_path / "dir.mp4"
    folder.symlink_to(tmp_path)
    with pytest.raises(ValidationError, match="is not a regular file"):
        inspect_file(folder)
    broken = tmp_path / "gone.mp4"
    broken.symlink_to(tmp_path / "nothing-here")
    with pytest.raises(ValidationError, match="gone.mp4 is a broken symlink"):
        inspect_file(broken)


def test_mp4_bytes_named_txt_are_stored_as_original_mp4(cli, session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_org(session, slug="local")
    session.commit()
    clip = _write(tmp_path / "clip.txt", MP4_HEADER)
    result = cli("media", "upload", str(clip), "--org", "local", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["media_id"]
    (row,) = session.scalars(select(m.MediaItem)).all()
    assert row.r2_key.endswith("/original.mp4") and row.mime_type == "video/mp4"
    assert row.filename == "clip.txt"
