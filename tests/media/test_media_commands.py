"""The presigned two-step flow, status transitions, list/show/url/delete as an operator sees them."""

from __future__ import annotations

import json
import uuid

import requests
from sqlalchemy import select

from services.core import models as m
from tests.factories import make_content, make_media, make_org, make_owner

OPS = "ops@example.com"


def _setup(session, slug: str = "acme"):  # type: ignore[no-untyped-def]
    org = make_org(session, slug=slug)
    make_owner(session, email=OPS)
    return org


def test_presigned_upload_then_complete_records_the_item(cli, s3_settings, s3_client, session) -> None:  # type: ignore[no-untyped-def]
    org = _setup(session)
    session.commit()
    run = cli.with_settings(**s3_settings.__dict__)

    step1 = run(
        "media",
        "presign-upload",
        "--org",
        "acme",
        "--filename",
        "talk.mp4",
        "--content-type",
        "video/mp4",
        "--json",
    )
    assert step1.exit_code == 0, step1.output
    doc = json.loads(step1.stdout)
    assert set(doc) >= {"uploadUrl", "mediaId", "r2Key", "expiresIn"}
    assert doc["expiresIn"] == 3600
    assert doc["r2Key"] == f"{org.id}/originals/{doc['mediaId']}/original.mp4"

    early = run(
        "media",
        "complete",
        doc["mediaId"],
        "--org",
        "acme",
        "--filename",
        "talk.mp4",
        "--size",
        "11",
        "--mime",
        "video/mp4",
    )
    assert early.exit_code == 1 and "File upload not completed" in early.stderr

    put = requests.put(
        doc["uploadUrl"], data=b"video bytes", headers={"Content-Type": "video/mp4"}, timeout=10
    )
    assert put.status_code == 200
    done = run(
        "media", "complete", doc["mediaId"], "--org", "acme", "--filename", "talk.mp4",
        "--size", "11", "--mime", "video/mp4", "--json",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    row = session.get(m.MediaItem, uuid.UUID(doc["mediaId"]))
    assert (row.status, row.r2_key, row.file_size_bytes, row.type) == (
        m.MediaStatus.uploaded,
        doc["r2Key"],
        11,
        m.MediaType.video,
    )
    again = run(
        "media",
        "complete",
        doc["mediaId"],
        "--org",
        "acme",
        "--filename",
        "talk.mp4",
        "--size",
        "11",
        "--mime",
        "video/mp4",
    )
    assert again.exit_code == 1 and "already" in again.stderr


def test_presign_refuses_non_media_types(cli, s3_settings, session) -> None:  # type: ignore[no-untyped-def]
    _setup(session)
    session.commit()
    result = cli.with_settings(**s3_settings.__dict__)(
        "media", "presign-upload", "--org", "acme", "--filename", "x.pdf", "--content-type", "application/pdf"
    )
    assert result.exit_code == 2 and "only video/* and audio/*" in result.stderr


def test_status_moves_forward_and_never_back(cli, session) -> None:  # type: ignore[no-untyped-def]
    org = _setup(session)
    media = make_media(session, org, status=m.MediaStatus.uploaded)
    session.commit()
    mid = str(media.id)

    ready = cli("media", "mark-ready", mid, "--by", OPS)
    assert ready.exit_code == 0 and "uploaded -> ready" in ready.stdout
    again = cli("media", "mark-ready", mid, "--by", OPS)
    assert again.exit_code == 0 and "already ready" in again.stdout
    failed = cli("media", "mark-failed", mid, "--by", OPS, "--reason", "corrupt", "--json")
    assert failed.exit_code == 0 and json.loads(failed.stdout)["media"]["status"] == "failed"
    back = cli("media", "mark-ready", mid, "--by", OPS)
    assert back.exit_code == 1 and "is failed; it cannot become ready" in back.stderr

    session.expire_all()
    assert session.get(m.MediaItem, media.id).status == m.MediaStatus.failed
    actions = session.scalars(select(m.AuditLog.action).where(m.AuditLog.target_id == mid)).all()
    assert sorted(actions) == ["media.failed", "media.ready"]


def test_status_change_needs_an_operator(cli, session) -> None:  # type: ignore[no-untyped-def]
    org = _setup(session)
    media = make_media(session, org, status=m.MediaStatus.uploaded)
    session.commit()
    result = cli("media", "mark-ready", str(media.id))
    assert result.exit_code == 2 and "--by" in result.stderr


def test_list_filters_by_status_and_hides_deleted(cli, session) -> None:  # type: ignore[no-untyped-def]
    org = _setup(session)
    other = make_org(session, slug="other")
    ready = make_media(session, org, status=m.MediaStatus.ready, filename="ready.mp4")
    make_media(session, org, status=m.MediaStatus.uploaded, filename="new.mp4")
    make_media(session, org, filename="gone.mp4", deleted_at=ready.created_at)
    make_media(session, other, filename="elsewhere.mp4")
    session.commit()

    all_items = json.loads(cli("media", "list", "--org", "acme", "--json").stdout)
    assert sorted(i["filename"] for i in all_items) == ["new.mp4", "ready.mp4"]
    only_ready = json.loads(cli("media", "list", "--org", "acme", "--status", "ready", "--json").stdout)
    assert [i["id"] for i in only_ready] == [str(ready.id)]
    piped = cli("media", "list", "--org", "acme")
    assert piped.stdout.splitlines()[0].startswith("id\ttype\tstatus")
    bad = cli("media", "list", "--org", "acme", "--status", "done")
    assert bad.exit_code == 2


def test_url_is_a_working_presigned_get(cli, s3_settings, s3_client, session) -> None:  # type: ignore[no-untyped-def]
    org = _setup(session)
    media = make_media(session, org)
    session.commit()
    s3_client.put_object(Bucket=s3_settings.r2_media_bucket, Key=media.r2_key, Body=b"movie")
    run = cli.with_settings(**s3_settings.__dict__)

    result = run("media", "url", str(media.id), "--expires", "120")
    assert result.exit_code == 0, result.output
    link = result.stdout.strip()
    assert "X-Amz-Expires=120" in link
    assert requests.get(link, timeout=10).content == b"movie"
    assert run("media", "url", str(uuid.uuid4())).exit_code == 3


def test_delete_is_refused_while_content_uses_the_item(cli, s3_settings, s3_client, session) -> None:  # type: ignore[no-untyped-def]
    org = _setup(session)
    media = make_media(session, org)
    content = make_content(session, org, media=media)
    session.commit()
    s3_client.put_object(Bucket=s3_settings.r2_media_bucket, Key=media.r2_key, Body=b"movie")

    result = cli.with_settings(**s3_settings.__dict__)("media", "delete", str(media.id), "--by", OPS, "--yes")
    assert result.exit_code == 1 and f"used by content {content.id}" in result.stderr
    session.expire_all()
    assert session.get(m.MediaItem, media.id).deleted_at is None
    assert s3_client.head_object(Bucket=s3_settings.r2_media_bucket, Key=media.r2_key)


def test_delete_soft_deletes_and_removes_objects(cli, s3_settings, s3_client, session) -> None:  # type: ignore[no-untyped-def]
    org = _setup(session)
    media = make_media(session, org)
    keep = make_media(session, org)
    session.commit()
    bucket = s3_settings.r2_media_bucket
    thumb = f"{org.id}/thumbnails/{media.id}/thumb-small.jpg"
    for key in (media.r2_key, thumb, keep.r2_key):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    run = cli.with_settings(**s3_settings.__dict__)

    refused = run("media", "delete", str(media.id), "--by", OPS)
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    dry = run("media", "delete", str(media.id), "--by", OPS, "--dry-run", "--json")
    assert dry.exit_code == 0 and sorted(json.loads(dry.stdout)["keys"]) == sorted([media.r2_key, thumb])
    assert len(s3_client.list_objects_v2(Bucket=bucket)["Contents"]) == 3

    done = run("media", "delete", str(media.id), "--by", OPS, "--yes")
    assert done.exit_code == 0, done.output
    session.expire_all()
    assert session.get(m.MediaItem, media.id).deleted_at is not None
    assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]] == [keep.r2_key]
    assert run("media", "delete", str(media.id), "--by", OPS, "--yes").exit_code == 3

    shown = json.loads(run("media", "show", str(media.id), "--json").stdout)
    assert shown["media"]["deleted_at"] is not None and shown["object_exists"] is False


def test_show_reports_a_missing_object(cli, s3_settings, session) -> None:  # type: ignore[no-untyped-def]
    org = _setup(session)
    media = make_media(session, org)
    session.commit()
    result = cli.with_settings(**s3_settings.__dict__)("media", "show", str(media.id))
    assert result.exit_code == 0
    assert "object:" in result.stdout and "MISSING" in result.stdout
    assert cli("media", "show", "not-a-uuid").exit_code == 2
