"""Streaming URLs: refused without access; with it, a player can follow master -> variant -> segment."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest

from services.bootstrap import Container
from services.core import models as m
from services.media import jobs
from tests.factories import make_content, make_media, make_membership, make_org, make_purchase, make_user
from tests.media.test_processing import (
    SMALL_LADDER,
    _decoded_size,
    _master,
    _segments,
    samples,  # noqa: F401 - the session fixture of real media
)

pytestmark = pytest.mark.commits


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url) as resp:
        return bytes(resp.read())


def _uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(params=["local", "s3"])
def store_env(request, settings, cli) -> Any:  # type: ignore[no-untyped-def]
    """(container, cli) on the local directory store or on moto S3."""
    if request.param == "local":
        c, run, signed = Container(settings), cli, False
    else:
        s3 = request.getfixturevalue("s3_settings")
        c, run, signed = Container(s3), cli.with_settings(**s3.__dict__), True
    yield c, run, signed
    c.close()


def test_streaming_url_needs_access_and_plays_from_the_bucket(store_env, samples) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    container, run, signed = store_env
    with container.uow() as uow:
        s = uow.session
        org = make_org(s, slug="acme")
        media = make_media(s, org, status=m.MediaStatus.uploaded, type=m.MediaType.audio)
        content = make_content(s, org, media, slug="talk")
        buyer, stranger, member = (
            make_user(s, email=f"{n}@example.com") for n in ("buyer", "stranger", "member")
        )
        make_membership(s, org, member, m.MemberRole.creator)
        refunded = make_user(s, email="refunded@example.com")
        make_purchase(s, refunded, content, refunded_at=datetime.now(UTC))
        make_purchase(s, buyer, content)
        key, media_id = media.r2_key, media.id
        uow.commit()
    container.object_store.put_file(key, samples["tone"], "audio/mpeg", {})

    # Not processed yet: the original.
    res = run("access", "url", "--user", "buyer@example.com", "--content", "talk", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "original" and doc["expires_in"] == 3600
    assert _get(doc["url"]) == samples["tone"].read_bytes()

    for who in ("stranger@example.com", "refunded@example.com"):
        refused = run("access", "url", "--user", who, "--content", "talk")
        assert refused.exit_code == 1 and refused.stdout == ""
        assert "No access" in refused.stderr
    assert (
        run("access", "check", "--user", "stranger@example.com", "--content", str(content.id)).exit_code == 1
    )

    assert jobs.process_media(container, [str(media_id)])[0].outcome == "ready"
    for who in ("buyer@example.com", "member@example.com"):
        res = run("access", "url", "--user", who, "--content", "talk", "--org", "acme")
        assert res.exit_code == 0, res.output
        master = _get(res.stdout.strip()).decode()
        [variant_url] = _uris(master)
        variant = _get(variant_url).decode()
        segments = _uris(variant)
        assert segments and all("://" in u for u in segments)
        if signed:
            assert all("X-Amz-Signature=" in u for u in [variant_url, *segments])
        assert _get(segments[0])[:1] == b"\x47"  # an MPEG-TS packet


def test_a_ready_video_plays_every_rendition_and_a_non_ready_one_gives_the_original(  # type: ignore[no-untyped-def]
    store_env,
    samples,  # noqa: F811
    tmp_path,
):
    container, run, signed = store_env
    with container.uow() as uow:
        s = uow.session
        org = make_org(s, slug="acme")
        media = make_media(s, org, status=m.MediaStatus.uploaded, type=m.MediaType.video)
        film = make_content(s, org, media, slug="film")
        make_purchase(s, make_user(s, email="buyer@example.com"), film)
        make_user(s, email="ops@example.com", role=m.UserRole.platform_owner)
        key, media_id = media.r2_key, media.id
        uow.commit()
    container.object_store.put_file(key, samples["clip"], "video/mp4", {})

    def url() -> dict[str, Any]:
        res = run("access", "url", "--user", "buyer@example.com", "--content", "film", "--json")
        assert res.exit_code == 0, res.output
        return dict(json.loads(res.stdout))

    def original_is_served() -> None:
        doc = url()
        assert doc["kind"] == "original" and doc["expires_in"] == 3600
        assert ("X-Amz-Signature=" in doc["url"]) is signed
        assert _get(doc["url"]) == samples["clip"].read_bytes()

    original_is_served()  # uploaded: not processed yet
    assert jobs.process_media(container, [str(media_id)], ladder=SMALL_LADDER)[0].outcome == "ready"

    doc = url()
    assert doc["kind"] == "hls"
    variants = _master(_get(doc["url"]).decode())
    assert [a["RESOLUTION"] for a, _ in variants] == ["214x120", "426x240"]
    for attrs, variant_url in variants:
        assert int(attrs["BANDWIDTH"]) > 0 and attrs["CODECS"].startswith("avc1.")
        segments = _segments(_get(variant_url).decode())
        assert [round(d) for d, _ in segments] == [6, 1]
        if signed:
            assert all("X-Amz-Signature=" in u for u in [variant_url, *(u for _, u in segments)])
        for _, segment_url in segments:  # every segment a player asks for is there
            data = _get(segment_url)
            assert data[:1] == b"\x47"  # an MPEG-TS packet
        assert _decoded_size(_get(segments[0][1]), tmp_path) == attrs["RESOLUTION"]

    # Marked failed (its HLS still in the bucket): not ready, so the original again.
    failed = run("media", "mark-failed", str(media_id), "--by", "ops@example.com")
    assert failed.exit_code == 0, failed.output
    original_is_served()
