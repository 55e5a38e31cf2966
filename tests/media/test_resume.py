"""Resuming interrupted uploads, starting over, stalls: `codex media upload` against moto over HTTP.

Requests are counted by a proxy in front of moto (tests/standins/s3_proxy.py): what the client sent,
not what codex says it sent.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from sqlalchemy import select

from services.adapters.storage import MiB
from services.bootstrap import Container
from services.core import models as m
from services.media import resume as records
from services.media.upload import upload_media
from tests.conftest import settings_env
from tests.factories import make_org
from tests.media.test_upload import _FailAfterFirstPart, _rows, _uploads
from tests.standins.s3_proxy import CountingProxy, StallingServer

BIG = 40 * MiB + 3  # 6 parts of 8 MiB (the default part size; 16 MiB threshold)


def _parts(s3_client, bucket: str, upload: dict) -> list[int]:  # type: ignore[no-untyped-def]
    r = s3_client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return [p["PartNumber"] for p in r.get("Parts", [])]


def test_killed_upload_resumes_sending_only_the_missing_parts(
    cli, s3_settings, s3_client, session, make_file
) -> None:  # type: ignore[no-untyped-def]
    make_org(session, slug="acme")
    session.commit()
    big = make_file("lecture.mp4", BIG)
    bucket = s3_settings.r2_media_bucket
    with CountingProxy(s3_settings.r2_endpoint_url) as proxy:
        settings = replace(s3_settings, r2_endpoint_url=proxy.url)
        env = {k: v for k, v in os.environ.items()}
        env.update({k: v for k, v in settings_env(settings).items() if v is not None})
        proxy.hold_after = 2  # the third part waits: the process is mid-upload when signalled
        process = subprocess.Popen(
            [sys.executable, "-m", "codex_cli", "media", "upload", str(big), "--org", "acme", "-c", "1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proxy.holding.wait(120), "the upload never reached its third part"
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            proxy.release()
            out, err = process.communicate(timeout=120)
        finally:
            process.kill()
        assert process.returncode == 1, out + err
        assert "Interrupted: 0 of 1 file(s) uploaded" in err
        assert "run the same command again" in err
        (upload,) = _uploads(s3_client, bucket)
        kept = _parts(s3_client, bucket, upload)
        assert 2 <= len(kept) < 6
        assert _rows(session) == []
        ((record_path, record),) = records.iter_records(s3_settings.codex_home)
        assert record.upload_id == upload["UploadId"] and record.key == upload["Key"]
        assert record_path.stat().st_mode & 0o777 == 0o600

        proxy.reset()
        result = cli.with_settings(**settings.__dict__)(
            "media", "upload", str(big), "--org", "acme", "--json"
        )

        assert result.exit_code == 0, result.output
        missing = sorted(set(range(1, 7)) - set(kept))
        assert proxy.parts_sent() == missing  # only the missing parts went over the wire
        assert proxy.count("POST", "uploads") == 0  # no new multipart upload
        assert proxy.count("GET", "uploadId") >= 1  # the kept parts were listed (ListParts)
    (row,) = _rows(session)
    data = big.read_bytes()
    assert row.r2_key == upload["Key"] and row.sha256 == hashlib.sha256(data).hexdigest()
    assert s3_client.get_object(Bucket=bucket, Key=row.r2_key)["Body"].read() == data
    assert _uploads(s3_client, bucket) == []
    assert list(records.iter_records(s3_settings.codex_home)) == []


def _interrupted(s3_settings, org, big: Path) -> dict:  # type: ignore[no-untyped-def]
    """An upload of `big` stopped (as by Ctrl-C) after its first part; returns the kept upload."""
    container = Container(s3_settings)
    batch = upload_media(
        container, [big], org.slug, concurrency=1, listener=_FailAfterFirstPart(big, KeyboardInterrupt())
    )
    container.close()
    assert batch.interrupted and batch.resumable == 1
    return next(iter(records.iter_records(s3_settings.codex_home)))[1].__dict__


def test_changed_file_starts_a_new_upload(cli, s3_settings, s3_client, session, make_file) -> None:  # type: ignore[no-untyped-def]
    org = make_org(session, slug="acme")
    session.commit()
    big = make_file("talk.mp4", 20 * MiB)
    with CountingProxy(s3_settings.r2_endpoint_url) as proxy:
        settings = replace(s3_settings, r2_endpoint_url=proxy.url)
        old = _interrupted(settings, org, big)
        with open(big, "r+b") as fh:  # same size, new content and mtime
            fh.seek(10 * MiB)
            fh.write(os.urandom(1024))
        os.utime(big, ns=(old["mtime_ns"] + 10**9, old["mtime_ns"] + 10**9))
        proxy.reset()
        result = cli.with_settings(**settings.__dict__)("media", "upload", str(big), "--org", "acme")
        assert result.exit_code == 0, result.output
        assert proxy.parts_sent() == [1, 2, 3]  # everything again
        assert proxy.count("DELETE", "uploadId") == 1  # the stale upload was aborted
    (row,) = _rows(session)
    assert row.r2_key != old["key"]
    assert (
        s3_client.get_object(Bucket=s3_settings.r2_media_bucket, Key=row.r2_key)["Body"].read()
        == big.read_bytes()
    )
    assert _uploads(s3_client, s3_settings.r2_media_bucket) == []


def test_no_resume_starts_over(cli, s3_settings, s3_client, session, make_file) -> None:  # type: ignore[no-untyped-def]
    org = make_org(session, slug="acme")
    session.commit()
    big = make_file("talk.mp4", 20 * MiB)
    with CountingProxy(s3_settings.r2_endpoint_url) as proxy:
        settings = replace(s3_settings, r2_endpoint_url=proxy.url)
        old = _interrupted(settings, org, big)
        proxy.reset()
        result = cli.with_settings(**settings.__dict__)(
            "media", "upload", str(big), "--org", "acme", "--no-resume"
        )
        assert result.exit_code == 0, result.output
        assert proxy.parts_sent() == [1, 2, 3]
        assert proxy.count("DELETE", "uploadId") == 1  # the kept upload was aborted
    (row,) = _rows(session)
    assert row.r2_key != old["key"]
    assert _uploads(s3_client, s3_settings.r2_media_bucket) == []
    assert list(records.iter_records(s3_settings.codex_home)) == []


def test_cleanup_orphans_aborts_the_kept_upload_and_drops_its_record(
    cli, s3_settings, s3_client, session, make_file
) -> None:  # type: ignore[no-untyped-def]
    org = make_org(session, slug="acme")
    session.commit()
    big = make_file("talk.mp4", 20 * MiB)
    _interrupted(s3_settings, org, big)

    result = cli.with_settings(**s3_settings.__dict__)("cleanup", "orphans", "--older-than", "0s", "--yes")
    assert result.exit_code == 0, result.output
    assert _uploads(s3_client, s3_settings.r2_media_bucket) == []
    assert list(records.iter_records(s3_settings.codex_home)) == []


def test_a_server_that_stops_reading_gives_one_clear_error(cli, s3_settings, session, make_file) -> None:  # type: ignore[no-untyped-def]
    make_org(session, slug="acme")
    session.commit()
    clip = make_file("clip.mp4", 6 * MiB)
    with StallingServer() as server:
        started = time.monotonic()
        result = cli.with_settings(
            **replace(s3_settings, r2_endpoint_url=server.url, codex_upload_stall_seconds="1").__dict__
        )("media", "upload", str(clip), "--org", "acme")
        elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert "stalled while trying to upload" in result.stderr
    assert "no progress for 1 s, and none after retrying" in result.stderr
    assert result.stderr.strip().endswith("0 of 1 file(s) uploaded, 1 failed.")
    assert server.puts >= 2  # the stalled request was retried, then given up
    assert elapsed < 90  # generous: 5 attempts of 1 s plus the retries' back-off
    assert session.scalars(select(m.MediaItem)).all() == []


def test_every_part_carries_a_checksum_and_a_part_corrupted_on_the_way_is_refused_then_resumed(
    cli, s3_settings, s3_client, session, make_file
) -> None:  # type: ignore[no-untyped-def]
    """The proxy checks checksums as S3 and R2 do (moto checks none): a byte flipped in part 2 on the
    way is refused (BadDigest), the upload stops with no row and keeps what arrived, and the same
    command sends the rest; the object is byte-identical to the file."""
    make_org(session, slug="acme")
    session.commit()
    big = make_file("lecture.mp4", BIG)
    bucket = s3_settings.r2_media_bucket
    with CountingProxy(s3_settings.r2_endpoint_url) as proxy:
        upload = cli.with_settings(**replace(s3_settings, r2_endpoint_url=proxy.url).__dict__)
        proxy.corrupt_part = 2
        first = upload("media", "upload", str(big), "--org", "acme", "-c", "1")
        assert first.exit_code == 1, first.output
        assert proxy.refused >= 1
        assert "run the same upload again to resume" in first.output
        assert _rows(session) == []
        proxy.reset()
        second = upload("media", "upload", str(big), "--org", "acme", "-c", "1")
        assert second.exit_code == 0, second.output
        assert 2 in proxy.parts_sent()
        assert set(proxy.checksums().values()) == {"crc32"}  # a loopback endpoint: CRC32 per part
    (row,) = _rows(session)
    data = big.read_bytes()
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert s3_client.get_object(Bucket=bucket, Key=row.r2_key)["Body"].read() == data
