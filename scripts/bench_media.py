"""Measure codex's media processing against the ffmpeg command line producing the same HLS ladder.

Usage: python scripts/bench_media.py [--seconds 60] [--height 1080] [--rounds 3] [--clips 4]
                                     [--clip-seconds 10] [--worker-rounds 2] [--skip-workers]

Run it under the shared lock (`flock /tmp/codex-heavy.lock python scripts/bench_media.py`): the
machine has two cores and other heavy runs would be measured too.

1. A test clip (testsrc2 + a tone, H.264/AAC, `--seconds` long at `--height` lines, 30 fps) is made
   with the same ffmpeg (not measured).
2. floor: `ffmpeg` run directly with the arguments codex uses for the ladder (services/media/processing.py
   `hls_args`: one decode, split, 360p/720p/1080p capped at the source, master playlist).
   codex: `process_media` on a media item of that clip in a real PostgreSQL (the test suite's embedded
   server, migrated) and the local object store: download, probe, thumbnails, the ladder, upload of
   every output, the job's claim/lease/finish transactions. Ratio = codex / floor (target <= 1.2).
   The two alternate (floor, codex, floor, codex ... `--rounds` pairs), so a change of load on the
   machine hits both; the ratio is of the medians. Every figure is printed with the 1-minute load
   average before and after it, and with the share of the machine's CPU time that other processes
   used meanwhile ("others", from /proc/stat minus this process and its children). The load average
   counts runnable threads, and one ladder run alone (three x264 encoders, a decoder, the scalers)
   lifts it to about 8 on two cores: "others" is the figure that says whether a run was disturbed.
3. workers: `--clips` shorter clips (`--clip-seconds`) queued, then `run_worker` with concurrency 1 and
   with concurrency 2 (each a claim loop on the shared queue, as two `codex media worker` processes
   would be; ffmpeg runs as its own process either way), alternating `--worker-rounds` times.
   Ratio = one worker / two workers (medians).

The machine is shared: absolute figures are noisy, compare the ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_clip(path: Path, seconds: int, height: int) -> None:
    from services.media.ffmpeg import ffmpeg_exe

    width = height * 16 // 9
    width -= width % 2
    subprocess.run(
        [
            ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
            str(path),
        ],
        check=True,
    )  # fmt: skip


def load() -> float:
    return os.getloadavg()[0]


def _cpu() -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, CPU seconds of this process and its children)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    ours = sum(
        r.ru_utime + r.ru_stime
        for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    return busy / os.sysconf("SC_CLK_TCK"), ours


class Sample:
    """Wall time of a block, the load average around it, and what other processes took meanwhile."""

    def __enter__(self) -> Sample:
        self.load_before = load()
        self.cpu_before = _cpu()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        busy, ours = (after - before for after, before in zip(_cpu(), self.cpu_before, strict=True))
        self.others = max(0.0, busy - ours) / (self.seconds * (os.cpu_count() or 1))
        self.load_after = load()

    def line(self, label: str) -> None:
        print(
            f"  {label:<30}{self.seconds:8.1f} s   (load {self.load_before:.2f} -> {self.load_after:.2f}, "
            f"others {self.others:4.0%} of the CPUs)",
            flush=True,
        )


def floor(clip: Path, out: Path) -> Sample:
    """The ladder straight from the ffmpeg command line, into a fresh directory."""
    from services.media.ffmpeg import ffmpeg_exe, probe
    from services.media.processing import hls_args

    shutil.rmtree(out, ignore_errors=True)
    args, _ = hls_args(clip, out, probe(clip))
    out.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    with Sample() as sample:
        subprocess.run(cmd, check=True)
    shutil.rmtree(out, ignore_errors=True)
    return sample


def add_items(container: Any, clips: list[Path]) -> list[uuid.UUID]:
    from sqlalchemy import select

    from services.core import models as m
    from services.core import r2keys
    from services.media.jobs import enqueue_jobs

    ids = []
    with container.uow() as uow:
        org = uow.session.scalars(select(m.Organization).where(m.Organization.slug == "bench")).first()
        if org is None:
            org = m.Organization(slug="bench", name="Bench")
            uow.session.add(org)
            uow.session.flush()
        for clip in clips:
            media_id = uuid.uuid4()
            key = r2keys.media_original(org.id, media_id, "mp4")
            container.object_store.put_file(key, clip, "video/mp4", {})
            uow.session.add(
                m.MediaItem(
                    id=media_id,
                    organization_id=org.id,
                    type=m.MediaType.video,
                    r2_key=key,
                    filename=clip.name,
                    mime_type="video/mp4",
                    file_size_bytes=clip.stat().st_size,
                )
            )
            ids.append(media_id)
        uow.session.flush()
        enqueue_jobs(uow.session, ids)
        uow.commit()
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--rounds", type=int, default=3, help="floor/codex pairs, alternating")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--clip-seconds", type=int, default=10)
    parser.add_argument("--worker-rounds", type=int, default=2, help="one/two-worker pairs, alternating")
    parser.add_argument("--skip-workers", action="store_true")
    opts = parser.parse_args()

    from services.bootstrap import Container
    from services.media.jobs import process_media, run_worker
    from services.settings import Settings
    from tests.pg import TestPostgres

    work = Path(tempfile.mkdtemp(prefix="codex-bench-media-"))
    pg = None
    try:
        clip = work / "clip.mp4"
        print(f"making a {opts.seconds} s {opts.height}p clip ...", flush=True)
        make_clip(clip, opts.seconds, opts.height)
        (work / "pg").mkdir()
        pg = TestPostgres(work / "pg")
        pg.create_template()
        db = pg.clone()
        container = Container(Settings(codex_home=work / "home", database_url=pg.sqlalchemy_url(db)))

        print(f"\n{opts.seconds} s {opts.height}p clip, {opts.rounds} alternating rounds (shared machine)")
        floors: list[float] = []
        codexes: list[float] = []
        renditions: list[str] = []
        for n in range(opts.rounds):
            sample = floor(clip, work / "floor")
            floors.append(sample.seconds)
            sample.line(f"round {n + 1}: ffmpeg command line")
            [media_id] = add_items(container, [clip])
            with Sample() as sample:
                [result] = process_media(container, [str(media_id)])
            codexes.append(sample.seconds)
            assert result.outcome == "ready", result.error
            renditions = result.renditions
            sample.line(f"round {n + 1}: codex media process")
        floor_s, codex_s = statistics.median(floors), statistics.median(codexes)
        print(f"  ladder {', '.join(renditions)}; medians:")
        print(f"  ffmpeg command line (floor)   {floor_s:8.1f} s")
        print(f"  codex media process           {codex_s:8.1f} s")
        print(f"  ratio codex / floor           {codex_s / floor_s:8.2f} x   (target <= 1.2)", flush=True)

        if not opts.skip_workers:
            short = work / "short.mp4"
            make_clip(short, opts.clip_seconds, opts.height)
            rounds = opts.worker_rounds
            print(f"\n{opts.clips} clips of {opts.clip_seconds} s {opts.height}p, {rounds} rounds")
            timings: dict[int, list[float]] = {1: [], 2: []}
            for r in range(opts.worker_rounds):
                for n in (1, 2):
                    add_items(container, [short] * opts.clips)
                    with Sample() as sample:
                        count = run_worker(
                            container, concurrency=n, stop=threading.Event(), exit_when_idle=True, poll=0.2
                        )
                    timings[n].append(sample.seconds)
                    assert count == opts.clips, count
                    sample.line(f"round {r + 1}: {'one worker' if n == 1 else 'two workers'}")
            one, two = statistics.median(timings[1]), statistics.median(timings[2])
            print("  medians:")
            print(f"  one worker                    {one:8.1f} s")
            print(f"  two workers                   {two:8.1f} s")
            print(f"  ratio one / two               {one / two:8.2f} x   ({os.cpu_count()} CPUs)")
        container.close()
    finally:
        if pg is not None:
            pg.server.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
