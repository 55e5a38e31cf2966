"""Processing of one media file on disk: probe, three JPEG thumbnails, and an HLS ladder (video) or one
AAC rendition (audio), written into an output directory. No database, no bucket: see jobs.py for those.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from services.media.ffmpeg import FFmpegFailed, Probe, probe, run_ffmpeg


@dataclass(frozen=True)
class Rung:
    """One rendition of the ladder: output height and video bitrate (kbit/s)."""

    height: int
    video_kbps: int

    @property
    def name(self) -> str:
        return f"{self.height}p"


# 360p/720p/1080p, capped at the source's height; a smaller source gets one rendition at its own size.
LADDER = (Rung(360, 800), Rung(720, 2800), Rung(1080, 5000))
THUMBNAIL_WIDTHS = {"small": 320, "medium": 640, "large": 1280}
AUDIO_KBPS = 128
SEGMENT_SECONDS = 6
PRESET = "veryfast"


@dataclass
class Outputs:
    """What processing wrote: HLS files relative to `hls_dir` (master last), thumbnails by size."""

    probe: Probe
    hls_dir: Path
    hls_files: list[str] = field(default_factory=list)
    renditions: list[str] = field(default_factory=list)
    thumbnails: dict[str, Path] = field(default_factory=dict)

    @property
    def duration_seconds(self) -> int:
        return int(round(self.probe.duration or 0))


def plan_ladder(source_height: int, ladder: tuple[Rung, ...] = LADDER) -> list[Rung]:
    rungs = [r for r in ladder if r.height <= source_height]
    if rungs:
        return rungs
    lowest = min(ladder, key=lambda r: r.height)
    own = max(2, source_height - source_height % 2)
    return [Rung(own, max(100, lowest.video_kbps * own // lowest.height))]


def hls_args(
    src: Path,
    out: Path,
    p: Probe,
    ladder: tuple[Rung, ...] = LADDER,
    preset: str = PRESET,
    segment_seconds: int = SEGMENT_SECONDS,
) -> tuple[list[str], list[Rung]]:
    """The ffmpeg arguments that write the whole HLS set (renditions + master.m3u8) into `out`.
    scripts/bench_media.py runs the same arguments as the floor."""
    hls = [
        "-f",
        "hls",
        "-hls_time",
        str(segment_seconds),
        "-hls_playlist_type",
        "vod",
        "-hls_flags",
        "independent_segments",
        "-hls_segment_filename",
        str(out / "%v" / "seg%03d.ts"),
        "-master_pl_name",
        "master.m3u8",
    ]
    audio = ["-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-ac", "2"]
    if p.video is None:
        args = ["-i", str(src), "-map", "0:a:0", "-vn", *audio, *hls]
        return [*args, "-var_stream_map", "a:0,name:audio", str(out / "%v" / "index.m3u8")], []
    rungs = plan_ladder(p.video.height or 0, ladder)
    n = len(rungs)
    split = f"[0:v:0]split={n}" + "".join(f"[s{i}]" for i in range(n))
    scales = ";".join(f"[s{i}]scale=-2:{r.height}[v{i}]" for i, r in enumerate(rungs))
    args = ["-i", str(src), "-filter_complex", f"{split};{scales}"]
    streams = []
    for i, r in enumerate(rungs):
        args += [
            "-map",
            f"[v{i}]",
            f"-b:v:{i}",
            f"{r.video_kbps}k",
            f"-maxrate:v:{i}",
            f"{r.video_kbps * 3 // 2}k",
        ]
        args += [f"-bufsize:v:{i}", f"{r.video_kbps * 2}k"]
        if p.audio is not None:
            args += ["-map", "0:a:0"]
            streams.append(f"v:{i},a:{i},name:{r.name}")
        else:
            streams.append(f"v:{i},name:{r.name}")
    args += ["-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p", "-sc_threshold", "0"]
    # A keyframe every segment_seconds, so every rendition cuts its segments at the same instants.
    args += ["-force_key_frames", f"expr:gte(t,n_forced*{segment_seconds})"]
    if p.audio is not None:
        args += audio
    args += [*hls, "-var_stream_map", " ".join(streams), str(out / "%v" / "index.m3u8")]
    return args, rungs


def thumbnail_args(src: Path, out: Path, p: Probe) -> tuple[list[str], dict[str, Path]]:
    """Three JPEGs from one decode: a representative (not black) frame early in a video, or the
    cover art of an audio file; never wider than the source."""
    source = p.video or p.cover
    assert source is not None
    source_width = source.width or max(THUMBNAIL_WIDTHS.values())
    sizes = list(THUMBNAIL_WIDTHS.items())
    split = f"split={len(sizes)}" + "".join(f"[t{i}]" for i in range(len(sizes)))
    if p.video is not None:
        start = min(2.0, (p.duration or 0) * 0.1)
        # `thumbnail` picks the most representative of the next frames, which skips fades from black.
        graph = f"[0:v:0]thumbnail=25,{split}"
        args = ["-ss", f"{start:.3f}", "-i", str(src)]
    else:
        graph = f"[0:v:0]{split}"
        args = ["-i", str(src)]
    paths: dict[str, Path] = {}
    scales = []
    for i, (_, width) in enumerate(sizes):
        w = min(width, source_width)
        w -= w % 2
        scales.append(f"[t{i}]scale={w}:-2[o{i}]")
    args += ["-filter_complex", ";".join([graph, *scales])]
    for i, (name, _) in enumerate(sizes):
        paths[name] = out / f"thumb-{name}.jpg"
        args += ["-map", f"[o{i}]", "-frames:v", "1", "-q:v", "3", str(paths[name])]
    return args, paths


def process_file(
    src: Path,
    work: Path,
    *,
    ladder: tuple[Rung, ...] = LADDER,
    preset: str = PRESET,
    cancel: threading.Event | None = None,
) -> Outputs:
    """Probe `src` and write thumbnails and HLS under `work`; FFmpegFailed says what went wrong."""
    p = probe(src)
    hls_dir = work / "hls"
    hls_dir.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(probe=p, hls_dir=hls_dir)
    if p.video is not None or p.cover is not None:
        thumbs = work / "thumbnails"
        thumbs.mkdir(exist_ok=True)
        args, paths = thumbnail_args(src, thumbs, p)
        run_ffmpeg(args, cancel)
        missing = [name for name, path in paths.items() if not path.is_file()]
        if missing:
            raise FFmpegFailed(f"ffmpeg wrote no {missing[0]} thumbnail.")
        outputs.thumbnails = paths
    if p.audio is None and p.video is None:  # pragma: no cover - probe refuses these
        raise FFmpegFailed("Nothing to convert.")
    args, rungs = hls_args(src, hls_dir, p, ladder, preset)
    run_ffmpeg(args, cancel)
    outputs.renditions = [r.name for r in rungs] or ["audio"]
    if not (hls_dir / "master.m3u8").is_file():
        raise FFmpegFailed("ffmpeg wrote no master playlist.")
    files = sorted(
        str(path.relative_to(hls_dir))
        for path in hls_dir.rglob("*")
        if path.is_file() and path.name != "master.m3u8"
    )
    outputs.hls_files = [*files, "master.m3u8"]
    return outputs
