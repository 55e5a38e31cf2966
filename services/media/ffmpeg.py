"""FFmpeg from the `imageio-ffmpeg` wheel (a static ffmpeg binary with libx264, AAC and the HLS muxer):
the binary's path, running it, and probing a file from what `ffmpeg -i` prints (the wheel has no ffprobe).
"""

from __future__ import annotations

import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from services.core.errors import ConfigurationError, ValidationError


class FFmpegFailed(ValidationError):
    """FFmpeg could not read or convert the file; the message holds the last lines it printed."""


def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped by imageio-ffmpeg (IMAGEIO_FFMPEG_EXE overrides it)."""
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - it is a dependency
        raise ConfigurationError("imageio-ffmpeg is not installed: pip install imageio-ffmpeg.") from None
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as exc:
        raise ConfigurationError(f"No ffmpeg binary found ({exc}).") from None


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "no output"


def run_ffmpeg(args: list[str], cancel: threading.Event | None = None) -> str:
    """Run ffmpeg with `args`; its stderr on success, FFmpegFailed (with its last lines) otherwise.
    Setting `cancel` stops it (a worker that lost its lease, or SIGTERM)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    # A session of its own: Ctrl-C on the worker's terminal must not kill the job it is finishing.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    if cancel is not None:

        def watch() -> None:
            while proc.poll() is None:
                if cancel.wait(0.2):
                    proc.kill()
                    return

        threading.Thread(target=watch, daemon=True).start()
    _, err = proc.communicate()
    if cancel is not None and cancel.is_set():
        raise FFmpegFailed("Processing was cancelled.")
    if proc.returncode != 0:
        raise FFmpegFailed(f"ffmpeg failed: {_tail(err)}")
    return err


@dataclass(frozen=True)
class Stream:
    kind: str  # video | audio | other
    codec: str
    width: int | None = None
    height: int | None = None
    attached_pic: bool = False


@dataclass(frozen=True)
class Probe:
    duration: float | None
    bitrate_kbps: int | None
    streams: list[Stream] = field(default_factory=list)

    @property
    def video(self) -> Stream | None:
        """The first real video stream (cover art is not video)."""
        return next((s for s in self.streams if s.kind == "video" and not s.attached_pic), None)

    @property
    def audio(self) -> Stream | None:
        return next((s for s in self.streams if s.kind == "audio"), None)

    @property
    def cover(self) -> Stream | None:
        return next((s for s in self.streams if s.kind == "video" and s.attached_pic), None)


_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_BITRATE = re.compile(r"bitrate: (\d+) kb/s")
_STREAM = re.compile(r"^\s*Stream #\d+:\d+\S*: (Video|Audio|Data|Subtitle|Attachment): (\w+)(.*)$", re.M)
_SIZE = re.compile(r"[ ,](\d{2,5})x(\d{2,5})[ ,\]]")


def parse_probe(text: str) -> Probe:
    """The input description `ffmpeg -i` prints: duration, bitrate, streams with codec and size."""
    duration = None
    if m := _DURATION.search(text):
        duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    bitrate = int(m.group(1)) if (m := _BITRATE.search(text)) else None
    streams = []
    for kind, codec, rest in _STREAM.findall(text):
        size = _SIZE.search(rest + " ")
        streams.append(
            Stream(
                kind=kind.lower() if kind in ("Video", "Audio") else "other",
                codec=codec,
                width=int(size.group(1)) if size and kind == "Video" else None,
                height=int(size.group(2)) if size and kind == "Video" else None,
                attached_pic="(attached pic)" in rest,
            )
        )
    return Probe(duration=duration, bitrate_kbps=bitrate, streams=streams)


def probe(path: Path) -> Probe:
    """Probe a media file; FFmpegFailed when ffmpeg cannot read it or finds no audio or video in it."""
    # Without an output ffmpeg exits 1 after describing the input; an unreadable input has no "Input #".
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    text = proc.stderr
    if "Input #" not in text:
        raise FFmpegFailed(f"Probe failed: ffmpeg cannot read the file ({_tail(text, 1)}).")
    result = parse_probe(text)
    if result.video is None and result.audio is None:
        raise FFmpegFailed("Probe failed: the file has no video or audio stream.")
    if result.duration is None or result.duration <= 0:
        raise FFmpegFailed("Probe failed: the file has no duration.")
    return result
