"""`cleanup_orphans` against moto's S3 server and a real PostgreSQL: what goes, what stays, and why."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from services.core import models as m
from services.core import r2keys
from services.maintenance.orphans import cleanup_orphans
from tests import factories as f

DAY = timedelta(hours=24)


def later(hours: int = 25) -> datetime:
    """A `now` far enough ahead that objects put just now count as `hours` old (moto stamps them now)."""
    return datetime.now(UTC) + timedelta(hours=hours)


def org_id() -> uuid.UUID:
    return uuid.uuid4()


def make_resource(session, org: m.Organization, key: str | None = None) -> m.Resource:  # type: ignore[no-untyped-def]
    rid = uuid.uuid4()
    row = m.Resource(
        id=rid,
        organization_id=org.id,
        r2_key=key or r2keys.resource(org.id, rid, "workbook.pdf"),
        filename="workbook.pdf",
        mime_type="application/pdf",
        file_size_bytes=10,
    )
    session.add(row)
    session.flush()
    return row


def test_orphans_of_every_kind_are_deleted(s3_container, bucket) -> None:
    org, media = org_id(), uuid.uuid4()
    orphans = {
        bucket.put(r2keys.media_original(org, media, "mp4"), size=100),
        bucket.put(r2keys.media_hls(org, media)),
        bucket.put(f"{org}/hls/{media}/segment-00001.ts"),
        bucket.put(r2keys.thumbnail(org, media, "small")),
        bucket.put(r2keys.resource(org, uuid.uuid4(), "notes.pdf")),
    }
    result = cleanup_orphans(s3_container, DAY, now=later())
    assert bucket.listed() == set()
    assert result.orphans_deleted == len(orphans)
    assert result.orphan_bytes_deleted == 100 + 4 * 10


def test_keys_referenced_by_any_row_are_kept(s3_container, session, bucket) -> None:
    org = f.make_org(session)
    live = f.make_media(session, org)
    gone = f.make_media(session, org, deleted_at=datetime.now(UTC))
    content = f.make_content(
        session, org, media=live, thumbnail_r2_key=f"{org.id}/thumbnails/{uuid.uuid4()}/thumb-large.jpg"
    )
    resource = make_resource(session, org)
    session.commit()
    kept = {
        bucket.put(live.r2_key),  # media_items.r2_key
        bucket.put(gone.r2_key),  # a soft-deleted row still references its original
        bucket.put(content.thumbnail_r2_key),  # content.thumbnail_r2_key
        bucket.put(resource.r2_key),  # resources.r2_key
        bucket.put(r2keys.media_hls(org.id, live.id)),  # derived keys of a live media item
        bucket.put(f"{org.id}/hls/{live.id}/720p/segment-1.ts"),
        bucket.put(r2keys.thumbnail(org.id, live.id, "medium")),
    }
    derived_of_deleted = {
        bucket.put(r2keys.media_hls(org.id, gone.id)),
        bucket.put(r2keys.thumbnail(org.id, gone.id, "small")),
    }
    result = cleanup_orphans(s3_container, DAY, now=later())
    assert bucket.listed() == kept
    assert result.orphans_deleted == len(derived_of_deleted)


def test_orphan_younger_than_the_threshold_is_kept(s3_container, bucket) -> None:
    young = bucket.put(r2keys.media_original(org_id(), uuid.uuid4(), "mp4"))
    result = cleanup_orphans(s3_container, DAY, now=later(hours=23))
    assert bucket.listed() == {young}
    assert result.keys_too_young == 1 and result.orphans_deleted == 0


def test_keys_outside_the_layout_are_never_touched(s3_container, bucket) -> None:
    org, media = org_id(), uuid.uuid4()
    outside = {
        bucket.put(r2keys.asset(org, "logos", "logo.png")),
        bucket.put("backups/db.dump"),
        bucket.put("readme.txt"),
        bucket.put(f"{org}/originals/not-a-uuid/original.mp4"),
        bucket.put(f"{org}/originals/{media}/copy-of-original.mp4"),
        bucket.put(f"{org}/thumbnails/{media}/poster.png"),
        bucket.put(f"{org}/resources/{uuid.uuid4()}/nested/file.pdf"),
        bucket.put(f"org-slug/originals/{media}/original.mp4"),
    }
    result = cleanup_orphans(s3_container, DAY, now=later())
    assert bucket.listed() == outside
    assert result.keys_outside_layout == len(outside) and result.keys_checked == 0


def test_stale_uploaded_media_is_removed_with_its_object(s3_container, session, bucket) -> None:
    org = f.make_org(session)
    stale = f.make_media(session, org, status=m.MediaStatus.uploaded, file_size_bytes=5000)
    session.commit()
    stale_id = stale.id
    bucket.put(stale.r2_key, size=5000)
    result = cleanup_orphans(s3_container, DAY, now=later())
    session.expire_all()
    assert session.get(m.MediaItem, stale_id) is None
    assert bucket.listed() == set()
    assert result.stale_media_deleted == 1 and result.stale_media_bytes_deleted == 5000


def test_media_used_by_content_recent_or_processed_is_kept(s3_container, session, bucket) -> None:
    org = f.make_org(session)
    used = f.make_media(session, org, status=m.MediaStatus.uploaded)
    f.make_content(session, org, media=used, status=m.ContentStatus.draft)
    ready = f.make_media(session, org, status=m.MediaStatus.ready)
    session.commit()
    recent = f.make_media(session, org, status=m.MediaStatus.uploaded)
    recent.created_at = datetime.now(UTC) + timedelta(hours=2)  # newer than the threshold below
    session.commit()
    keys = {bucket.put(used.r2_key), bucket.put(ready.r2_key), bucket.put(recent.r2_key)}
    result = cleanup_orphans(s3_container, DAY, now=later())
    assert bucket.listed() == keys
    assert session.scalar(select(func.count()).select_from(m.MediaItem)) == 3
    assert result.stale_media_deleted == 0


def test_old_incomplete_multipart_upload_is_aborted(s3_container, bucket) -> None:
    # moto reports every upload as initiated in 2010, so a "young upload is kept" case cannot be shown here.
    org = org_id()
    bucket.start_multipart(r2keys.media_original(org, uuid.uuid4(), "mov"))
    bucket.start_multipart(r2keys.asset(org, "logos", "big.png"))
    result = cleanup_orphans(s3_container, DAY, now=later())
    assert bucket.uploads() == {r2keys.asset(org, "logos", "big.png")}
    assert result.multipart_aborted == 1


def test_dry_run_lists_candidates_and_deletes_nothing(s3_container, session, bucket) -> None:
    org = f.make_org(session)
    stale = f.make_media(session, org, status=m.MediaStatus.uploaded)
    session.commit()
    keys = {bucket.put(stale.r2_key), bucket.put(r2keys.thumbnail(org.id, uuid.uuid4(), "large"), size=7)}
    bucket.start_multipart(r2keys.media_original(org.id, uuid.uuid4(), "mp4"))
    listed = []
    result = cleanup_orphans(s3_container, DAY, dry_run=True, now=later(), on_candidate=listed.append)
    assert bucket.listed() == keys and len(bucket.uploads()) == 1
    session.expire_all()
    assert session.get(m.MediaItem, stale.id) is not None
    assert sorted(c.kind for c in listed) == ["multipart", "orphan", "stale_media"]
    assert (result.orphans_found, result.orphan_bytes_found) == (1, 7)
    assert result.stale_media_found == 1 and result.multipart_found == 1
    assert result.orphans_deleted == result.stale_media_deleted == result.multipart_aborted == 0


def test_row_inserted_after_the_scan_saves_its_object(s3_container, session, bucket) -> None:
    """The confirmed run re-checks every batch right before deleting it."""
    org = f.make_org(session)
    session.commit()
    bucket.put(r2keys.media_original(org.id, uuid.uuid4(), "mp4"))
    rescued_id = uuid.uuid4()
    rescued = bucket.put(r2keys.media_original(org.id, rescued_id, "mp4"))
    shown = []

    def insert_row_then_say_yes(plan) -> bool:  # type: ignore[no-untyped-def]
        shown.append(plan.orphans)
        f.make_media(session, org, id=rescued_id, r2_key=rescued)
        session.commit()
        return True

    result = cleanup_orphans(s3_container, DAY, now=later(), confirm=insert_row_then_say_yes)
    assert shown == [2]
    assert bucket.listed() == {rescued}
    assert result.orphans_deleted == 1 and result.saved_by_recheck == 1


def test_row_inserted_while_streaming_saves_its_waiting_object(s3_container, session, bucket) -> None:
    """Unattended: orphans wait for a full delete batch, and every page's query re-checks them."""
    org = f.make_org(session)
    session.commit()
    ids = sorted((uuid.uuid4() for _ in range(4)), key=str)  # listed in key order
    keys = [bucket.put(r2keys.media_original(org.id, i, "mp4")) for i in ids]
    inserted = []

    def after_each_page(event) -> None:  # type: ignore[no-untyped-def]
        if event.phase == "scan" and event.keys_listed == 1 and not inserted:
            # the first listed key is now waiting in the delete batch; a row for it appears
            f.make_media(session, org, id=ids[0], r2_key=keys[0])
            session.commit()
            inserted.append(keys[0])

    result = cleanup_orphans(
        s3_container, DAY, now=later(), on_progress=after_each_page, page_size=1, batch_size=3
    )
    assert bucket.listed() == {keys[0]}
    assert result.saved_by_recheck == 1 and result.orphans_deleted == 3


def test_checks_are_batched_per_page_and_deletes_per_batch(s3_container, session, bucket) -> None:
    org = f.make_org(session)
    referenced = [f.make_media(session, org) for _ in range(5)]
    session.commit()
    for media in referenced:
        bucket.put(media.r2_key)
    for _ in range(25):
        bucket.put(r2keys.media_original(org.id, uuid.uuid4(), "mp4"))
    result = cleanup_orphans(s3_container, DAY, now=later(), page_size=10, batch_size=10)
    assert bucket.listed() == {media.r2_key for media in referenced}
    assert result.keys_listed == 30 and result.orphans_deleted == 25
    # one stale-media query, one query per listed page (3 pages), no query per key
    assert result.db_queries <= 1 + 3 + 1
    assert result.delete_requests == 3  # 10 + 10 + 5


def test_each_run_writes_one_audit_row_with_counts_and_bytes(s3_container, session, bucket) -> None:
    bucket.put(r2keys.media_original(org_id(), uuid.uuid4(), "mp4"), size=1234)
    cleanup_orphans(s3_container, DAY, now=later())
    cleanup_orphans(s3_container, DAY, now=later(), dry_run=True)
    rows = session.scalars(select(m.AuditLog).where(m.AuditLog.action == "cleanup.orphans")).all()
    assert len(rows) == 1
    assert rows[0].actor == "codex cleanup"
    assert rows[0].details["orphans_deleted"] == 1 and rows[0].details["bytes_reclaimed"] == 1234


def test_a_second_run_while_the_first_is_running_does_nothing(s3_container, s3_cli, bucket) -> None:
    """Two runs at once: the second sees the advisory lock, says so and exits 0; the first finishes."""
    key = bucket.put(r2keys.media_original(org_id(), uuid.uuid4(), "mp4"))
    second = []

    def start_a_second_run(plan) -> bool:  # type: ignore[no-untyped-def]
        second.append(s3_cli("cleanup", "orphans", "--older-than", "0s", "--yes"))
        second.append(s3_cli("cleanup", "orphans", "--older-than", "0s", "--yes", "--json"))
        assert bucket.listed() == {key}
        return True

    first = cleanup_orphans(s3_container, DAY, now=later(), confirm=start_a_second_run)
    text_run, json_run = second
    assert text_run.exit_code == 0 and "Another cleanup run is in progress" in text_run.stdout
    assert json_run.exit_code == 0 and '"locked_out": true' in json_run.stdout
    assert first.orphans_deleted == 1 and bucket.listed() == set()


@pytest.mark.commits
def test_local_object_store_is_cleaned_the_same_way(container, session) -> None:
    """The embedded default (a directory) goes through the same rules."""
    store = container.object_store
    org = f.make_org(session)
    kept_media = f.make_media(session, org)
    session.commit()
    root = store.root
    for key in (kept_media.r2_key, r2keys.media_original(org.id, uuid.uuid4(), "mp4"), "notes/todo.txt"):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"data")
    result = cleanup_orphans(container, DAY, now=later())
    remaining = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert remaining == {kept_media.r2_key, "notes/todo.txt"}
    assert result.orphans_deleted == 1


def test_declining_the_confirmation_deletes_nothing_and_audits_nothing(s3_container, session, bucket) -> None:
    key = bucket.put(r2keys.media_original(org_id(), uuid.uuid4(), "mp4"))
    result = cleanup_orphans(s3_container, DAY, now=later(), confirm=lambda plan: False)
    assert result.aborted and result.orphans_found == 1 and result.orphans_deleted == 0
    assert bucket.listed() == {key}
    assert session.scalars(select(m.AuditLog)).all() == []
