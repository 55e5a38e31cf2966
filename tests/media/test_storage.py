"""Object store adapters: S3ObjectStore against moto over HTTP, LocalObjectStore on a directory."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
import requests

from services.adapters.storage import (
    LocalObjectStore,
    MiB,
    S3ObjectStore,
    build_object_store,
)
from services.core.errors import ExternalServiceError


def _store(s3_settings, **kw) -> S3ObjectStore:  # type: ignore[no-untyped-def]
    return S3ObjectStore(
        bucket=s3_settings.r2_media_bucket,
        endpoint_url=s3_settings.r2_endpoint_url,
        access_key_id="testing",
        secret_access_key="testing",
        **kw,
    )


def _file(tmp_path: Path, name: str, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def test_build_object_store_picks_s3_when_an_endpoint_is_set(s3_settings) -> None:  # type: ignore[no-untyped-def]
    store = build_object_store(s3_settings)
    assert isinstance(store, S3ObjectStore)
    assert store.bucket == s3_settings.r2_media_bucket
    assert "reachable" in store.check()


def test_build_object_store_defaults_to_a_directory_under_codex_home(settings) -> None:  # type: ignore[no-untyped-def]
    store = build_object_store(settings)
    assert isinstance(store, LocalObjectStore)
    assert store.root == settings.codex_home / "objects" / "codex-media"


def test_r2_account_id_gives_the_cloudflare_endpoint(settings) -> None:  # type: ignore[no-untyped-def]
    store = build_object_store(
        replace(settings, r2_account_id="abc123", r2_access_key_id="k", r2_secret_access_key="s")
    )
    assert isinstance(store, S3ObjectStore)
    assert store.endpoint_url == "https://abc123.r2.cloudflarestorage.com"
    assert store.client.meta.region_name == "auto"


def test_multipart_upload_is_byte_identical_with_type_and_metadata(s3_settings, s3_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = _store(s3_settings, multipart_threshold=5 * MiB, part_size=5 * MiB)
    path, data = _file(tmp_path, "big.mp4", 12 * MiB + 123)
    progress: list[int] = []
    store.put_file(
        "o/originals/m/original.mp4", path, "video/mp4", {"sha256": "abc"}, on_progress=progress.append
    )

    got = s3_client.get_object(Bucket=store.bucket, Key="o/originals/m/original.mp4")
    assert got["Body"].read() == data
    assert got["ContentType"] == "video/mp4"
    assert got["Metadata"] == {"sha256": "abc"}
    assert got["ETag"].strip('"').endswith("-3")  # three parts: the multipart path was taken
    assert sum(progress) == len(data) and len(progress) == 3


def test_small_file_is_one_put(s3_settings, s3_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = _store(s3_settings)
    path, data = _file(tmp_path, "a.mp3", 1000)
    store.put_file("k/a.mp3", path, "audio/mpeg", {})
    got = s3_client.get_object(Bucket=store.bucket, Key="k/a.mp3")
    assert got["Body"].read() == data
    assert "-" not in got["ETag"]


def test_failure_mid_multipart_upload_aborts_it(s3_settings, s3_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = _store(s3_settings, multipart_threshold=5 * MiB, part_size=5 * MiB)
    path, _ = _file(tmp_path, "big.mp4", 16 * MiB)

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt  # what Ctrl-C looks like to the uploading code

    with pytest.raises(KeyboardInterrupt):
        store.put_file("o/big.mp4", path, "video/mp4", {}, on_progress=interrupt, concurrency=2)
    assert s3_client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert store.head("o/big.mp4") is None


def test_head_reports_size_type_metadata_and_missing(s3_settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = _store(s3_settings)
    path, data = _file(tmp_path, "a.bin", 10)
    store.put_file("x/a.bin", path, "audio/wav", {"sha256": "f00"})
    info = store.head("x/a.bin")
    assert info is not None
    assert (info.size, info.content_type, info.metadata) == (10, "audio/wav", {"sha256": "f00"})
    assert isinstance(info.last_modified, datetime) and info.last_modified.tzinfo is not None
    assert store.head("x/missing") is None


def test_presigned_put_works_with_a_plain_http_client(s3_settings, s3_client) -> None:  # type: ignore[no-untyped-def]
    store = _store(s3_settings)
    url = store.presign_put("o/originals/m/original.mp4", "video/mp4", expires=600)
    assert "X-Amz-Signature" in url and "X-Amz-Expires=600" in url
    response = requests.put(url, data=b"hello video", headers={"Content-Type": "video/mp4"}, timeout=10)
    assert response.status_code == 200
    got = s3_client.get_object(Bucket=store.bucket, Key="o/originals/m/original.mp4")
    assert got["Body"].read() == b"hello video"
    assert got["ContentType"] == "video/mp4"

    download = requests.get(store.presign_get("o/originals/m/original.mp4"), timeout=10)
    assert download.content == b"hello video"


def test_delete_many_batches_and_listing_pages(s3_settings, s3_client) -> None:  # type: ignore[no-untyped-def]
    store = _store(s3_settings)
    keys = [f"p/{i:04d}" for i in range(1005)]
    for key in keys:
        s3_client.put_object(Bucket=store.bucket, Key=key, Body=b"x")
    s3_client.put_object(Bucket=store.bucket, Key="other/1", Body=b"x")

    pages = list(store.iter_pages("p/", page_size=400))
    assert [len(p) for p in pages] == [400, 400, 205]
    assert [o.key for p in pages for o in p] == keys

    before = store.request_count
    result = store.delete_many(keys)
    assert store.request_count - before == 2  # one DeleteObjects per 1,000 keys
    assert sorted(result.deleted) == keys and result.errors == []
    assert [o.key for p in store.iter_pages() for o in p] == ["other/1"]


def test_incomplete_multipart_uploads_can_be_listed_and_aborted(s3_settings, s3_client) -> None:  # type: ignore[no-untyped-def]
    store = _store(s3_settings)
    upload_id = s3_client.create_multipart_upload(Bucket=store.bucket, Key="o/stale.mp4")["UploadId"]
    uploads = list(store.iter_multipart_uploads("o/"))
    assert [(u.key, u.upload_id) for u in uploads] == [("o/stale.mp4", upload_id)]
    store.abort_multipart_upload("o/stale.mp4", upload_id)
    assert list(store.iter_multipart_uploads()) == []


def test_missing_bucket_is_reported_without_secrets(s3_settings) -> None:  # type: ignore[no-untyped-def]
    store = build_object_store(
        replace(s3_settings, r2_media_bucket="no-such-bucket", r2_secret_access_key="s3cr3t-key")
    )
    with pytest.raises(ExternalServiceError, match="does not exist") as err:
        store.check()
    assert "s3cr3t" not in str(err.value)


def test_unreachable_endpoint_is_an_external_service_error(settings) -> None:  # type: ignore[no-untyped-def]
    store = S3ObjectStore("b", "http://127.0.0.1:9", "k", "s")
    store.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(ExternalServiceError, match="Cannot reach"):
        store.head("x")


def test_local_store_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = LocalObjectStore(tmp_path / "objects" / "codex-media")
    assert "local directory" in store.check()
    path, data = _file(tmp_path, "clip.mp4", 3 * MiB)
    progress: list[int] = []
    store.put_file(
        "o/originals/m/original.mp4", path, "video/mp4", {"sha256": "abc"}, on_progress=progress.append
    )
    store.put_file("o/originals/n/original.mp3", path, "audio/mpeg", {})
    store.put_file("o-x/1", path, "audio/mpeg", {})

    assert (store.root / "o/originals/m/original.mp4").read_bytes() == data
    assert sum(progress) == len(data)
    info = store.head("o/originals/m/original.mp4")
    assert info is not None
    assert (info.size, info.content_type, info.metadata) == (len(data), "video/mp4", {"sha256": "abc"})
    assert info.last_modified.tzinfo is not None
    # S3 key order: "o-x/1" < "o/..." because "-" sorts before "/".
    assert [o.key for p in store.iter_pages() for o in p] == [
        "o-x/1",
        "o/originals/m/original.mp4",
        "o/originals/n/original.mp3",
    ]
    assert [o.key for p in store.iter_pages("o/") for o in p] == [
        "o/originals/m/original.mp4",
        "o/originals/n/original.mp3",
    ]
    assert store.presign_get("o/originals/m/original.mp4").startswith("file://")
    assert list(store.iter_multipart_uploads()) == []

    result = store.delete_many(["o/originals/m/original.mp4", "o/originals/n/original.mp3"])
    assert len(result.deleted) == 2
    assert store.head("o/originals/m/original.mp4") is None
    assert not (store.root / "o").exists()


def test_local_store_interrupted_upload_leaves_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = LocalObjectStore(tmp_path / "objects")
    path, _ = _file(tmp_path, "clip.mp4", 20 * MiB)

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.put_file("o/a.mp4", path, "video/mp4", {}, on_progress=interrupt)
    assert store.head("o/a.mp4") is None
    assert list(store.iter_pages()) == []
