"""Media processing with real media made by the same FFmpeg: probe, thumbnails, HLS, the job queue."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from services.core import models as m
from services.core import r2keys
from services.media import jobs
from services.media.processing import Rung
from tests.factories import make_media, make_org, make_owner

# Workers commit in transactions of their own (claim, lease, finish) and run in threads.
pytestmark = pytest.mark.commits

OPS = "ops@example.com"
# A small ladder so a 240-line test clip gets two renditions and one rung above it is dropped.
SMALL_LADDER = (Rung(120, 150), Rung(240, 300), Rung(480, 600))


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _make(*args: str) -> None:
    subprocess.run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 7-second 426x240 test pattern with a tone (two 6 s HLS segments: 6 + 1), a 2-second tone,
    the tone with a 300x300 cover picture, and a corrupt "mp4"."""
    d = tmp_path_factory.mktemp("samples")
    lavfi_video = "testsrc2=size=426x240:rate=10:duration=7"
    clip = d / "clip.mp4"
    _make(
        "-f", "lavfi", "-i", lavfi_video, "-f", "lavfi", "-i", "sine=frequency=440:duration=7",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-shortest", str(clip),
    )  # fmt: skip
    tone = d / "tone.mp3"
    _make("-f", "lavfi", "-i", "sine=frequency=660:duration=2", "-c:a", "libmp3lame", str(tone))
    cover = d / "cover.jpg"
    _make("-f", "lavfi", "-i", "testsrc2=size=300x300:rate=1:duration=1", "-frames:v", "1", str(cover))
    covered = d / "covered.mp3"
    _make(
        "-i", str(tone), "-i", str(cover), "-map", "0", "-map", "1", "-c", "copy",
        "-disposition:v", "attached_pic", str(covered),
    )  # fmt: skip
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + os.urandom(4000))
    return {"clip": clip, "tone": tone, "covered": covered, "corrupt": corrupt}


def _item(container: Any, path: Path, kind: m.MediaType = m.MediaType.video) -> SimpleNamespace:
    """A committed `uploaded` media item whose original is `path`, in the container's store."""
    with container.uow() as uow:
        org = uow.session.scalars(select(m.Organization).where(m.Organization.slug == "acme")).first()
        if org is None:
            org = make_org(uow.session, slug="acme")
            make_owner(uow.session, email=OPS)
        media_id = uuid.uuid4()
        key = r2keys.media_original(org.id, media_id, path.suffix)
        container.object_store.put_file(key, path, "video/mp4", {})
        item = make_media(uow.session, org, status=m.MediaStatus.uploaded, type=kind, id=media_id, r2_key=key)
        jobs.enqueue_jobs(uow.session, [item.id])
        made = SimpleNamespace(id=item.id, organization_id=org.id)
        uow.commit()
    return made


def _fetch(container: Any, key: str) -> bytes:
    url = container.object_store.presign_get(key)
    import urllib.request

    with urllib.request.urlopen(url) as resp:
        return bytes(resp.read())


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's SOF marker."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i += 2 + length
    raise AssertionError("no SOF marker")


def _attrs(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line.split(":", 1)[1])}


def _master(text: str) -> list[tuple[dict[str, str], str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0] == "#EXTM3U"
    return [
        (_attrs(line), lines[i + 1]) for i, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF")
    ]


def _segments(text: str) -> list[tuple[float, str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0] == "#EXTM3U" and lines[-1] == "#EXT-X-ENDLIST"
    return [
        (float(line.split(":")[1].rstrip(",")), lines[i + 1])
        for i, line in enumerate(lines)
        if line.startswith("#EXTINF")
    ]


def _decoded_size(data: bytes, tmp: Path) -> str:
    """The video size ffmpeg reads back from a segment (e.g. '214x120')."""
    seg = tmp / f"seg-{uuid.uuid4()}.ts"
    seg.write_bytes(data)
    out = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(seg)], capture_output=True, text=True).stderr
    match = re.search(r"Video: h264.*?, (\d+x\d+)", out)
    assert match, out
    assert "Audio: aac" in out
    return match.group(1)


def _row(container: Any, media_id: uuid.UUID) -> SimpleNamespace:
    with container.uow() as uow:
        row = uow.session.get(m.MediaItem, media_id)
        assert row is not None
        return SimpleNamespace(
            id=row.id,
            organization_id=row.organization_id,
            status=row.status,
            duration_seconds=row.duration_seconds,
        )


def test_video_gets_thumbnails_a_capped_ladder_and_playable_hls(container, samples, tmp_path) -> None:  # type: ignore[no-untyped-def]
    item = _item(container, samples["clip"])
    [result] = jobs.process_media(container, [str(item.id)], ladder=SMALL_LADDER)
    assert result.outcome == "ready", result.error
    row = _row(container, item.id)
    assert row.status == m.MediaStatus.ready and row.duration_seconds == 7

    for size, width in {"small": 320, "medium": 426, "large": 426}.items():  # never wider than 426
        w, h = _jpeg_size(_fetch(container, r2keys.thumbnail(row.organization_id, row.id, size)))  # type: ignore[arg-type]
        assert (w, h) == (width, round(width * 240 / 426 / 2) * 2)

    master_key = r2keys.media_hls(row.organization_id, row.id)
    variants = _master(_fetch(container, master_key).decode())
    assert [a["RESOLUTION"] for a, _ in variants] == ["214x120", "426x240"]  # 480p dropped: above source
    for attrs, uri in variants:
        assert int(attrs["BANDWIDTH"]) > 0
        assert attrs["CODECS"].startswith("avc1.") and "mp4a.40.2" in attrs["CODECS"]
        base = master_key.rsplit("/", 1)[0] + "/" + uri.rsplit("/", 1)[0]
        segments = _segments(_fetch(container, f"{base}/{uri.rsplit('/', 1)[1]}").decode())
        assert [round(d) for d, _ in segments] == [6, 1]
        assert _decoded_size(_fetch(container, f"{base}/{segments[0][1]}"), tmp_path) == attrs["RESOLUTION"]


def test_source_below_the_lowest_rung_gets_one_rendition_at_its_own_size(container, samples) -> None:  # type: ignore[no-untyped-def]
    item = _item(container, samples["clip"])
    [result] = jobs.process_media(container, [str(item.id)])  # the real ladder starts at 360p
    assert result.outcome == "ready" and result.renditions == ["240p"]
    variants = _master(_fetch(container, r2keys.media_hls(item.organization_id, item.id)).decode())
    assert [a["RESOLUTION"] for a, _ in variants] == ["426x240"]


def test_audio_gets_an_aac_rendition_and_cover_art_thumbnails(container, samples) -> None:  # type: ignore[no-untyped-def]
    plain = _item(container, samples["tone"], m.MediaType.audio)
    covered = _item(container, samples["covered"], m.MediaType.audio)
    results = jobs.process_media(container, [str(plain.id), str(covered.id)])
    assert [r.outcome for r in results] == ["ready", "ready"]
    by_id = {r.media_id: r for r in results}
    assert by_id[plain.id].thumbnails == []
    assert container.object_store.head(r2keys.thumbnail(plain.organization_id, plain.id, "small")) is None
    for size in ("small", "medium", "large"):  # the 300x300 cover, never enlarged
        data = _fetch(container, r2keys.thumbnail(covered.organization_id, covered.id, size))  # type: ignore[arg-type]
        assert _jpeg_size(data) == (300, 300)
    master = _master(_fetch(container, r2keys.media_hls(plain.organization_id, plain.id)).decode())
    assert len(master) == 1 and master[0][0]["CODECS"] == "mp4a.40.2"
    assert _row(container, plain.id).duration_seconds == 2


def test_corrupt_file_fails_with_its_reason_shown_by_media_show(cli, container, samples) -> None:  # type: ignore[no-untyped-def]
    item = _item(container, samples["corrupt"])
    run = cli
    res = run("media", "process", str(item.id))
    assert res.exit_code == 4
    assert f"failed {item.id}: Probe failed" in res.stderr
    assert _row(container, item.id).status == m.MediaStatus.failed
    shown = run("media", "show", str(item.id), "--json")
    doc = json.loads(shown.stdout)
    assert doc["media"]["status"] == "failed" and doc["processing_error"].startswith("Probe failed")
    assert "processing:      failed: Probe failed" in run("media", "show", str(item.id)).stdout
    listed = json.loads(run("media", "jobs", "--status", "failed", "--json").stdout)
    assert [j["media_item_id"] for j in listed] == [str(item.id)]


def test_ready_item_is_left_alone_unless_forced(container, samples) -> None:  # type: ignore[no-untyped-def]
    item = _item(container, samples["tone"], m.MediaType.audio)
    assert jobs.process_media(container, [str(item.id)])[0].outcome == "ready"
    again = jobs.process_media(container, [str(item.id)])
    assert [r.outcome for r in again] == ["skipped"]
    forced = jobs.process_media(container, [str(item.id)], force=True)
    assert [r.outcome for r in forced] == ["ready"]
    with container.uow() as uow:
        actions = uow.session.scalars(
            select(m.AuditLog.action).where(m.AuditLog.target_id == str(item.id))
        ).all()
    assert actions == ["media.ready", "media.ready"]


def test_two_workers_one_job_process_it_once(container, samples) -> None:  # type: ignore[no-untyped-def]
    item = _item(container, samples["tone"], m.MediaType.audio)
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        barrier.wait()
        results.append(jobs.run_next(container, worker=name))

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.outcome if r else "none" for r in results) == ["none", "ready"]
    with container.uow() as uow:
        job = uow.session.scalars(select(m.MediaJob).where(m.MediaJob.media_item_id == item.id)).one()
        ready = uow.session.scalar(
            select(func.count()).select_from(m.AuditLog).where(m.AuditLog.action == "media.ready")
        )
        assert (job.status, job.attempts, ready) == ("done", 1, 1)


def test_a_job_whose_worker_died_is_finished_by_another_after_the_lease(container, samples) -> None:  # type: ignore[no-untyped-def]
    item = _item(container, samples["tone"], m.MediaType.audio)
    # A worker claims the job and dies: nobody renews its 1-second lease.
    dead = jobs._claim(container, "dead-worker", 1, None)
    assert isinstance(dead, jobs._Claim)
    assert jobs.run_next(container, worker="other") is None  # leased: not claimable yet
    time.sleep(1.5)
    result = jobs.run_next(container, worker="other")
    assert result is not None and result.outcome == "ready"
    # The dead worker's late finish changes nothing: its claim token is no longer the job's.
    assert jobs._finish(container, dead, "dead-worker", None, "late")[0] is False
    assert _row(container, item.id).status == m.MediaStatus.ready
    with container.uow() as uow:
        job = uow.session.scalars(select(m.MediaJob).where(m.MediaJob.media_item_id == item.id)).one()
        assert (job.status, job.attempts, job.worker) == ("done", 2, "other")


def test_upload_enqueues_and_process_pending_makes_it_ready(cli, session, samples) -> None:  # type: ignore[no-untyped-def]
    make_org(session, slug="acme")
    make_owner(session, email=OPS)
    session.commit()
    up = cli("media", "upload", str(samples["tone"]), "--org", "acme", "--by", OPS, "--json")
    assert up.exit_code == 0, up.output
    media_id = json.loads(up.stdout.splitlines()[0])["media_id"]
    queued = json.loads(cli("media", "jobs", "--json").stdout)
    assert [(j["media_item_id"], j["status"]) for j in queued] == [(media_id, "queued")]
    res = cli("media", "process", "--pending")
    assert res.exit_code == 0, res.output
    assert f"ready {media_id}: 2 s" in res.stdout
    shown = json.loads(cli("media", "show", media_id, "--json").stdout)
    assert shown["media"]["status"] == "ready" and shown["media"]["duration_seconds"] == 2
    assert json.loads(cli("media", "jobs", "--json").stdout)[0]["status"] == "done"
    assert cli("media", "process", "--pending").stdout.strip() == "Nothing to process."


def test_content_create_takes_the_medium_thumbnail_when_processing_made_one(container, samples) -> None:  # type: ignore[no-untyped-def]
    from services.catalog.content import create_content

    covered = _item(container, samples["covered"], m.MediaType.audio)
    assert jobs.process_media(container, [str(covered.id)])[0].outcome == "ready"
    with container.uow() as uow:  # made ready by hand: no thumbnails
        org = uow.session.scalars(select(m.Organization).where(m.Organization.slug == "acme")).one()
        bare_id = make_media(uow.session, org).id
        uow.commit()
    made = [
        create_content(container, "acme", str(media_id), f"Title {n}", "A description.", 999, by=OPS)
        for n, media_id in enumerate([covered.id, bare_id])
    ]
    assert made[0].thumbnail_r2_key == r2keys.thumbnail(covered.organization_id, covered.id, "medium")
    assert made[1].thumbnail_r2_key is None


def _start_worker(settings: Any, *extra: str, tmp: Path | None = None) -> subprocess.Popen[str]:
    """A real `codex media worker` process (the installed entry point's module) on these settings;
    its work directories under `tmp` when given (a killed worker leaves its own behind)."""
    import sys

    from tests.conftest import settings_env

    env = {**os.environ, **{k: v for k, v in settings_env(settings).items() if v is not None}}
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return subprocess.Popen(
        [sys.executable, "-m", "codex_cli", "media", "worker", "--poll", "0.2", "--json", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _job(container: Any, media_id: uuid.UUID) -> SimpleNamespace:
    with container.uow() as uow:
        job = uow.session.scalars(select(m.MediaJob).where(m.MediaJob.media_item_id == media_id)).one()
        return SimpleNamespace(status=job.status, attempts=job.attempts, worker=job.worker)


def _wait_until_done(container: Any, media_id: uuid.UUID, proc: subprocess.Popen[str]) -> None:
    for _ in range(600):  # the worker polls the queue
        if _job(container, media_id).status == "done":
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the job never finished")


def _finish_worker(container: Any, media_id: uuid.UUID, proc: subprocess.Popen[str]) -> str:
    """Wait until the worker has done `media_id`'s job, stop it with SIGTERM, check it exited 0 with
    one `--json` line saying `ready`, and return its stderr."""
    import signal

    try:
        _wait_until_done(container, media_id, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    [line] = out.splitlines()
    assert json.loads(line)["outcome"] == "ready"
    return err


def test_worker_process_runs_queued_jobs_and_stops_cleanly_on_sigterm(settings, container, samples) -> None:  # type: ignore[no-untyped-def]
    item = _item(container, samples["tone"], m.MediaType.audio)
    err = _finish_worker(container, item.id, _start_worker(settings))
    assert err == "Stopping after the current jobs.\n"  # --json: no summary line, no traceback
    assert _row(container, item.id).status == m.MediaStatus.ready


def test_worker_killed_mid_job_is_replaced_after_its_lease(s3_settings, samples, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL a real worker while it uploads outputs (its master playlist PUT is held by the proxy);
    a second worker takes the job once the 2-second lease has expired, overwrites what the first one
    left, and is the only one that publishes."""
    import signal
    import socket
    from dataclasses import replace

    from services.bootstrap import Container
    from tests.standins.s3_proxy import CountingProxy

    bucket = s3_settings.r2_media_bucket
    with CountingProxy(s3_settings.r2_endpoint_url) as proxy:
        settings = replace(s3_settings, r2_endpoint_url=proxy.url)
        container = Container(settings)
        item = _item(container, samples["clip"])
        hls = r2keys.media_hls(item.organization_id, item.id).rsplit("/", 1)[0] + "/"
        thumbs = r2keys.thumbnail(item.organization_id, item.id, "small").rsplit("/", 1)[0] + "/"
        proxy.reset()  # the original's upload is not an output

        def key(path: str) -> str:
            assert path.startswith(f"/{bucket}/"), path
            return path[len(bucket) + 2 :]

        def stored() -> set[str]:
            pages = [page for p in (hls, thumbs) for page in container.object_store.iter_pages(p)]
            return {o.key for page in pages for o in page}

        # The first worker gets through download, ffmpeg and its segments; its master PUT waits here.
        proxy.hold_when = lambda seen: seen.method == "PUT" and seen.path.endswith("/master.m3u8")
        first = _start_worker(settings, "--lease", "2", tmp=tmp_path)
        try:
            assert proxy.holding.wait(60), "the first worker never reached its master playlist"
            assert _job(container, item.id).worker.startswith(f"{socket.gethostname()}:{first.pid}/")
            assert _row(container, item.id).status == m.MediaStatus.transcoding
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        assert first.returncode == -signal.SIGKILL
        proxy.release(forward=False)  # the dead worker's master never reaches the bucket
        left_behind = stored()
        assert left_behind == {key(p) for p in proxy.paths("PUT")} != set()
        assert hls + "master.m3u8" not in left_behind  # partial outputs, nothing published
        dead = _job(container, item.id)
        assert (dead.status, dead.attempts) == ("running", 1)  # still leased to the dead worker
        assert _row(container, item.id).status == m.MediaStatus.transcoding

        proxy.reset()
        second = _start_worker(settings)  # its own lease is the default: a slow renewal cannot lose it
        _finish_worker(container, item.id, second)

        rewritten = {key(p) for p in proxy.paths("PUT")}
        assert left_behind < rewritten  # every partial output written again, then the rest
        assert stored() == rewritten  # nothing stale, nothing only the dead worker wrote
        job = _job(container, item.id)
        assert (job.status, job.attempts) == ("done", 2)
        assert job.worker.startswith(f"{socket.gethostname()}:{second.pid}/")
        row = _row(container, item.id)
        assert (row.status, row.duration_seconds) == (m.MediaStatus.ready, 7)
        with container.uow() as uow:
            audit = uow.session.scalars(
                select(m.AuditLog.actor).where(
                    m.AuditLog.target_id == str(item.id), m.AuditLog.action.like("media.%")
                )
            ).all()
        assert audit == [f"media-worker:{job.worker}"]  # published once, by the second worker

        [(attrs, uri)] = _master(_fetch(container, hls + "master.m3u8").decode())
        folder = hls + uri.rsplit("/", 1)[0] + "/"
        segments = _segments(_fetch(container, hls + uri).decode())
        assert [round(d) for d, _ in segments] == [6, 1]
        assert _decoded_size(_fetch(container, folder + segments[0][1]), tmp_path) == attrs["RESOLUTION"]
        assert _jpeg_size(_fetch(container, thumbs + "thumb-medium.jpg"))[0] == 426
        container.close()


def test_a_failed_item_is_processed_again_once_its_original_is_fixed(cli, container, samples) -> None:  # type: ignore[no-untyped-def]
    item = _item(container, samples["corrupt"])
    assert cli("media", "process", str(item.id)).exit_code == 4
    assert _row(container, item.id).status == m.MediaStatus.failed
    with container.uow() as uow:
        key = uow.session.get(m.MediaItem, item.id).r2_key  # type: ignore[union-attr]
    container.object_store.put_file(key, samples["clip"], "video/mp4", {})
    again = cli("media", "process", str(item.id))  # failed -> transcoding -> ready, no --force
    assert again.exit_code == 0, again.output
    assert _row(container, item.id).status == m.MediaStatus.ready


def test_an_item_marked_failed_while_processed_stays_failed(cli, container, samples) -> None:  # type: ignore[no-untyped-def]
    item = _item(container, samples["tone"], m.MediaType.audio)
    claim = jobs._claim(container, "w", 60, None)  # a worker is on it
    assert isinstance(claim, jobs._Claim) and _row(container, item.id).status == m.MediaStatus.transcoding
    marked = cli("media", "mark-failed", str(item.id), "--by", OPS, "--reason", "wrong file")
    assert marked.exit_code == 0, marked.output
    result = jobs._run_claim(container, claim, "w", 60, jobs.LADDER, jobs.PRESET, None)
    assert result.outcome == "failed" and "marked failed" in (result.error or "")
    assert _row(container, item.id).status == m.MediaStatus.failed
    shown = json.loads(cli("media", "show", str(item.id), "--json").stdout)
    assert shown["processing_error"] == result.error


def test_process_of_an_item_another_worker_holds_says_so_and_leaves_it(cli, container, samples) -> None:  # type: ignore[no-untyped-def]
    item = _item(container, samples["tone"], m.MediaType.audio)
    assert isinstance(jobs._claim(container, "elsewhere:42/0", 60, None), jobs._Claim)
    res = cli("media", "process", str(item.id))
    assert res.exit_code == 4 and res.stdout == ""
    assert f"running {item.id}: being processed by worker elsewhere:42/0" in res.stderr
    assert "its lease runs until 20" in res.stderr and res.stderr.endswith(" UTC); left to it.\n")
    doc = json.loads(cli("media", "process", str(item.id), "--json").stdout)
    assert (doc["media_id"], doc["outcome"]) == (str(item.id), "running")
    job = _job(container, item.id)  # untouched: still the other worker's
    assert (job.status, job.attempts, job.worker) == ("running", 1, "elsewhere:42/0")
    assert _row(container, item.id).status == m.MediaStatus.transcoding
