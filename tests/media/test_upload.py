"""`codex media upload` and the upload service against moto over HTTP and the local store."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from services.adapters.storage import MiB
from services.bootstrap import Container
from services.core import models as m
from services.media import resume as records
from services.media.upload import upload_media
from tests.factories import make_org, make_owner


def _rows(session) -> list[m.MediaItem]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return list(session.scalars(select(m.MediaItem).order_by(m.MediaItem.filename)))


def _keys(s3_client, bucket: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def _uploads(s3_client, bucket: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_upload_stores_verified_objects_and_rows(cli, s3_settings, s3_client, session, make_file) -> None:  # type: ignore[no-untyped-def]
    org = make_org(session, slug="acme")
    session.commit()
    video = make_file("Intro Clip.mp4", 70_000)
    audio = make_file("podcast.mp3", 30_000)

    result = cli.with_settings(**s3_settings.__dict__)(
        "media", "upload", str(video), str(audio), "--org", "acme", "--json"
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {line["filename"] for line in lines} == {"Intro Clip.mp4", "podcast.mp3"}
    assert set(lines[0]) >= {"path", "ok", "media_id", "r2_key", "mime_type", "size", "sha256", "error"}
    assert all(line["ok"] and line["error"] is None for line in lines)

    rows = _rows(session)
    assert [(r.filename, r.type, r.status, r.mime_type) for r in rows] == [
        ("Intro Clip.mp4", m.MediaType.video, m.MediaStatus.uploaded, "video/mp4"),
        ("podcast.mp3", m.MediaType.audio, m.MediaStatus.uploaded, "audio/mpeg"),
    ]
    for row, path in zip(rows, (video, audio), strict=True):
        data = path.read_bytes()
        ext = path.suffix.lstrip(".")
        assert row.r2_key == f"{org.id}/originals/{row.id}/original.{ext}"
        assert row.file_size_bytes == len(data)
        assert row.sha256 == hashlib.sha256(data).hexdigest()
        obj = s3_client.get_object(Bucket=s3_settings.r2_media_bucket, Key=row.r2_key)
        assert obj["Body"].read() == data
        assert obj["ContentType"] == row.mime_type
        assert obj["Metadata"]["sha256"] == row.sha256


def test_large_file_takes_the_multipart_path_and_is_byte_identical(
    s3_settings, s3_client, session, make_file
) -> None:  # type: ignore[no-untyped-def]
    org = make_org(session)
    session.commit()
    big = make_file("lecture.mp4", 11 * MiB + 17)
    container = Container(s3_settings)
    container.object_store.multipart_threshold = 5 * MiB  # lowered so the test stays small

    batch = upload_media(container, [big], org.slug, concurrency=3, part_size=5 * MiB)
    container.close()

    assert batch.ok, batch.results
    (row,) = _rows(session)
    obj = s3_client.get_object(Bucket=s3_settings.r2_media_bucket, Key=row.r2_key)
    assert obj["Body"].read() == big.read_bytes()
    assert obj["ETag"].strip('"').endswith("-3")  # three parts
    assert obj["ContentType"] == "video/mp4"


class _FailAfterFirstPart:
    """A listener that fails (or 'presses Ctrl-C') once the first part of `victim` has gone up."""

    def __init__(self, victim: Path, error: BaseException) -> None:
        self.victim, self.error = victim, error
        self.finished: list = []

    def file_started(self, path: Path, size: int) -> None:
        pass

    def file_progress(self, path: Path, nbytes: int) -> None:
        if path == self.victim:
            raise self.error

    def file_finished(self, result) -> None:  # type: ignore[no-untyped-def]
        self.finished.append(result)


def test_unexpected_failure_mid_upload_aborts_and_leaves_no_row(
    s3_settings, s3_client, session, make_file
) -> None:  # type: ignore[no-untyped-def]
    org = make_org(session)
    session.commit()
    big = make_file("big.mp4", 11 * MiB)
    container = Container(s3_settings)
    container.object_store.multipart_threshold = 5 * MiB
    listener = _FailAfterFirstPart(big, RuntimeError("disk vanished"))

    batch = upload_media(container, [big], org.slug, concurrency=2, part_size=5 * MiB, listener=listener)
    container.close()

    assert not batch.ok and not batch.interrupted
    (result,) = batch.results
    assert result.ok is False and result.error and not result.resumable
    assert listener.finished == [result]
    assert _rows(session) == []
    assert _uploads(s3_client, s3_settings.r2_media_bucket) == []
    assert _keys(s3_client, s3_settings.r2_media_bucket) == []
    assert list(records.iter_records(s3_settings.codex_home)) == []


def test_interrupted_upload_is_kept_and_the_same_upload_resumes_it(
    s3_settings, s3_client, session, make_file
) -> None:  # type: ignore[no-untyped-def]
    org = make_org(session)
    session.commit()
    big = make_file("big.mp4", 16 * MiB + 5)
    container = Container(s3_settings)
    container.object_store.multipart_threshold = 5 * MiB

    first = upload_media(
        container,
        [big],
        org.slug,
        concurrency=1,
        part_size=5 * MiB,
        listener=_FailAfterFirstPart(big, KeyboardInterrupt()),
    )
    assert first.interrupted and first.resumable == 1 and first.results[0].resumable
    (upload,) = _uploads(s3_client, s3_settings.r2_media_bucket)
    ((path, record),) = records.iter_records(s3_settings.codex_home)
    assert (record.upload_id, record.key, record.size) == (
        upload["UploadId"],
        upload["Key"],
        big.stat().st_size,
    )
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert _rows(session) == []

    second = upload_media(container, [big], org.slug, concurrency=1, part_size=5 * MiB)
    container.close()

    assert second.ok, second.results
    (result,) = second.results
    assert result.resumed and 0 < result.sent_bytes < big.stat().st_size
    (row,) = _rows(session)
    assert row.r2_key == record.key and row.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    got = s3_client.get_object(Bucket=s3_settings.r2_media_bucket, Key=row.r2_key)["Body"].read()
    assert got == big.read_bytes()
    assert _uploads(s3_client, s3_settings.r2_media_bucket) == []
    assert list(records.iter_records(s3_settings.codex_home)) == []


def test_one_failed_file_does_not_stop_the_others_and_exits_1(
    s3_settings, s3_client, session, make_file
) -> None:  # type: ignore[no-untyped-def]
    org = make_org(session)
    session.commit()
    good = make_file("good.mp3", 2000)
    bad = make_file("bad.mp4", 3000)
    container = Container(s3_settings)
    batch = upload_media(
        container, [good, bad], org.slug, listener=_FailAfterFirstPart(bad, RuntimeError("x"))
    )
    container.close()
    outcome = {Path(r.path).name: r.ok for r in batch.results}
    assert outcome == {"good.mp3": True, "bad.mp4": False}
    assert [r.filename for r in _rows(session)] == ["good.mp3"]
    assert len(_keys(s3_client, s3_settings.r2_media_bucket)) == 1


def test_piped_output_is_one_line_per_file(cli, s3_settings, session, make_file) -> None:  # type: ignore[no-untyped-def]
    make_org(session, slug="lines")
    session.commit()
    files = [str(make_file(f"f{i}.mp3", 1000 + i)) for i in range(3)]
    result = cli.with_settings(**s3_settings.__dict__)("media", "upload", *files, "--org", "lines")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("uploaded ") for line in lines)


def test_wrong_type_is_refused_before_anything_is_sent(
    cli, s3_settings, s3_client, session, make_file
) -> None:  # type: ignore[no-untyped-def]
    make_org(session, slug="acme")
    session.commit()
    ok = make_file("fine.mp4", 1000)
    text = make_file("notes.txt", 100, header=b"hello")
    pdf = make_file("sneaky.mp4", 100, header=b"%PDF-1.7")

    result = cli.with_settings(**s3_settings.__dict__)(
        "media", "upload", str(ok), str(text), str(pdf), "--org", "acme"
    )
    assert result.exit_code == 2
    assert "Nothing was uploaded" in result.stderr
    assert "notes.txt is not a video or audio file" in result.stderr
    assert "sneaky.mp4 is a PDF document" in result.stderr
    assert _keys(s3_client, s3_settings.r2_media_bucket) == []
    assert _rows(session) == []


def test_size_limits_are_refused_before_anything_is_sent(
    cli, s3_settings, s3_client, session, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    make_org(session, slug="acme")
    session.commit()
    audio = tmp_path / "long.mp3"
    video = tmp_path / "huge.mp4"
    for path, size in ((audio, 500 * MiB + 1), (video, 5 * 1024 * MiB + 1)):
        with open(path, "wb") as fh:  # sparse: no disk is used
            fh.write(b"ID3" if path.suffix == ".mp3" else b"\x00\x00\x00\x18ftypisom")
            fh.truncate(size)
    run = cli.with_settings(**s3_settings.__dict__)
    a = run("media", "upload", str(audio), "--org", "acme")
    assert a.exit_code == 2 and "over the 500 MiB limit for audio files" in a.stderr
    v = run("media", "upload", str(video), "--org", "acme")
    assert v.exit_code == 2 and "over the 5 GiB limit for video files" in v.stderr
    assert _keys(s3_client, s3_settings.r2_media_bucket) == []
    assert _uploads(s3_client, s3_settings.r2_media_bucket) == []


def test_unknown_org_is_not_found(cli, s3_settings, make_file) -> None:  # type: ignore[no-untyped-def]
    result = cli.with_settings(**s3_settings.__dict__)(
        "media", "upload", str(make_file("a.mp4")), "--org", "nope"
    )
    assert result.exit_code == 3 and "Organization 'nope' not found" in result.stderr


def test_upload_to_the_local_store_round_trips(cli, settings, session, make_file) -> None:  # type: ignore[no-untyped-def]
    org = make_org(session, slug="local")
    owner = make_owner(session, email="ops@example.com")
    session.commit()
    clip = make_file("clip.mp4", 5000)
    result = cli("media", "upload", str(clip), "--org", str(org.id), "--by", "ops@example.com", "--json")
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)
    (row,) = _rows(session)
    assert row.id == uuid.UUID(line["media_id"]) and row.uploaded_by == owner.id
    stored = settings.codex_home / "objects" / "codex-media" / row.r2_key
    assert stored.read_bytes() == clip.read_bytes()

    out = cli("media", "show", str(row.id), "--json")
    assert out.exit_code == 0, out.output
    shown = json.loads(out.stdout)
    assert shown["object_exists"] is True and shown["object_size"] == 5000


@pytest.mark.commits
def test_rows_written_together_keep_their_own_outcomes(container, session) -> None:  # type: ignore[no-untyped-def]
    """The group commit of many-file uploads: every good row lands, a clashing one alone fails."""
    import threading
    import time

    from services.core.errors import Conflict
    from services.media.files import MediaFile
    from services.media.upload import _GroupInserter, media_values

    org = make_org(session)
    session.commit()
    inserter = _GroupInserter(container, container.connect())

    def values(media_id: uuid.UUID) -> dict:
        f = MediaFile(Path("a.mp3"), "a.mp3", "audio/mpeg", "audio", 10, "mp3")
        return media_values(
            media_id, org.id, None, f"{org.id}/originals/{media_id}/original.mp3", f, "0" * 64
        )

    taken = uuid.uuid4()
    inserter.insert(values(taken))
    ids = [uuid.uuid4() for _ in range(11)] + [taken]
    outcomes: dict[uuid.UUID, object] = {}

    def worker(media_id: uuid.UUID) -> None:
        try:
            outcomes[media_id] = inserter.insert(values(media_id)).id
        except Conflict as exc:
            outcomes[media_id] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in ids]
    with inserter._turn:  # hold the writer's turn until every row is queued: they form one group
        for t in threads:
            t.start()
        while len(inserter._pending) < len(ids):
            time.sleep(0.01)
    for t in threads:
        t.join()
    inserter.close()

    assert isinstance(outcomes.pop(taken), Conflict)
    assert outcomes == {i: i for i in ids[:-1]}
    assert {r.id for r in _rows(session)} == set(ids)


class _DeleteOrgOnProgress:
    """A listener that deletes the organization (as another operator would) once bytes went up."""

    def __init__(self, session, org) -> None:  # type: ignore[no-untyped-def]
        self.session, self.org, self.finished = session, org, []

    def file_started(self, path: Path, size: int) -> None:
        pass

    def file_progress(self, path: Path, nbytes: int) -> None:
        if self.org is not None:
            self.session.delete(self.org)
            self.session.commit()
            self.org = None

    def file_finished(self, result) -> None:  # type: ignore[no-untyped-def]
        self.finished.append(result)


def test_org_deleted_during_the_upload_keeps_no_row_and_no_object(
    s3_settings, s3_client, session, make_file
) -> None:  # type: ignore[no-untyped-def]
    org = make_org(session)
    session.commit()
    clip = make_file("clip.mp4", 40_000)
    container = Container(s3_settings)
    listener = _DeleteOrgOnProgress(session, org)
    batch = upload_media(container, [clip], org.slug, listener=listener)
    container.close()

    (result,) = batch.results
    assert not result.ok
    assert result.error == "The organization was deleted during the upload."
    assert _rows(session) == []
    assert _keys(s3_client, s3_settings.r2_media_bucket) == []


class _DropDatabaseConnections:
    """A listener that, once bytes went up, terminates the upload's database connections."""

    def __init__(self, session) -> None:  # type: ignore[no-untyped-def]
        self.session, self.done, self.finished = session, False, []

    def file_started(self, path: Path, size: int) -> None:
        pass

    def file_progress(self, path: Path, nbytes: int) -> None:
        if not self.done:
            from sqlalchemy import text

            self.session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            self.session.commit()
            self.done = True

    def file_finished(self, result) -> None:  # type: ignore[no-untyped-def]
        self.finished.append(result)


def test_database_lost_during_the_upload_keeps_no_row_and_no_object(
    s3_settings, s3_client, session, make_file
) -> None:  # type: ignore[no-untyped-def]
    org = make_org(session)
    session.commit()
    clip = make_file("clip.mp4", 40_000)
    container = Container(s3_settings)
    batch = upload_media(container, [clip], org.slug, listener=_DropDatabaseConnections(session))
    container.close()

    (result,) = batch.results
    assert not result.ok
    assert result.error.startswith("Cannot connect to the database at ")
    assert "unexpected" not in result.error
    assert _rows(session) == []
    assert _keys(s3_client, s3_settings.r2_media_bucket) == []
