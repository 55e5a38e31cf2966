"""The upload's plain-SQL path (services/media/rows.py) stays in step with the models, finds what the
ORM lookups find, and keeps `codex media upload` free of SQLAlchemy."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import Table

from services.core import models as m
from services.core.errors import NotFound, PermissionDenied
from services.media import rows
from services.media.library import MediaView
from tests.conftest import settings_env
from tests.factories import make_org, make_owner


def test_the_insert_writes_every_column_the_table_needs() -> None:
    table: Table = m.MediaItem.__table__  # type: ignore[assignment]
    names = {c.name for c in table.columns}
    assert set(rows.INSERT_COLUMNS) <= names
    needed = {
        c.name
        for c in table.columns
        if not c.nullable and c.server_default is None and c.default is None and not c.primary_key
    }
    assert needed <= set(rows.INSERT_COLUMNS), "a NOT NULL column without default is not written"
    assert set(rows.RETURNED_COLUMNS) <= names, "MediaView has a field the table has not"


@pytest.mark.commits
def test_lookups_and_insert_match_the_orm(container, session) -> None:  # type: ignore[no-untyped-def]
    org = make_org(session, slug="acme")
    owner = make_owner(session, email="Owner@Example.com")
    session.commit()
    customer = m.User(email="viewer@example.com", name="V", role=m.UserRole.customer)
    session.add(customer)
    session.commit()
    conn = container.connect()
    try:
        assert rows.find_org_id(conn, "ACME ") == org.id
        assert rows.find_org_id(conn, str(org.id)) == org.id
        with pytest.raises(NotFound, match="Organization 'nope' not found."):
            rows.find_org_id(conn, "nope")
        assert rows.find_operator_id(conn, " owner@example.COM") == owner.id
        assert rows.find_operator_id(conn, None) is None
        with pytest.raises(PermissionDenied, match="viewer@example.com is not a platform_owner"):
            rows.find_operator_id(conn, "viewer@example.com")

        ids = [uuid.uuid4(), uuid.uuid4()]
        values = [
            {
                "id": media_id,
                "organization_id": org.id,
                "uploaded_by": owner.id if i == 0 else None,
                "type": "video" if i == 0 else "audio",
                "status": "uploaded",
                "r2_key": f"{org.id}/originals/{media_id}/original.mp4",
                "filename": f"f{i}.mp4",
                "mime_type": "video/mp4",
                "file_size_bytes": 5_000_000_000 + i,  # bigint
                "sha256": None if i else "a" * 64,
            }
            for i, media_id in enumerate(ids)
        ]
        views = rows.insert_media(conn, values)
    finally:
        conn.close()
    session.expire_all()
    for media_id in ids:
        item = session.get(m.MediaItem, media_id)
        assert views[media_id] == MediaView.of(item)
        assert session.query(m.MediaJob).filter_by(media_item_id=media_id, status="queued").count() == 1
    assert views[ids[0]].type == "video" and views[ids[1]].file_size_bytes == 5_000_000_001


@pytest.mark.commits  # the command connects on its own
def test_an_upload_imports_no_sqlalchemy(settings, session, tmp_path, make_file) -> None:  # type: ignore[no-untyped-def]
    """SQLAlchemy's import costs an upload ~0.3 s of CPU; a command run shows whether it came back."""
    make_org(session, slug="acme")
    session.commit()
    clip = make_file("clip.mp3", 20_000)
    env = dict(os.environ)
    env.update({k: v for k, v in settings_env(settings).items() if v is not None})
    script = (
        "import sys\nfrom codex_cli.app import app\n"
        "try:\n    app(['media', 'upload', sys.argv[1], '--org', 'acme'])\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "print(code, sorted(n for n in sys.modules if n.split('.')[0] in ('sqlalchemy', 'alembic')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(clip)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout + done.stderr
    assert session.query(m.MediaItem).filter_by(filename="clip.mp3").count() == 1
