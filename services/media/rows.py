"""The database work of an upload in plain SQL on one psycopg connection, without SQLAlchemy.

`codex media upload` does little in the database: find the organization (and the operator), insert the
`media_items` rows and queue one processing job per row. Importing SQLAlchemy and the models for that
costs ~0.3 s of CPU per command - a third of a one-file upload's, more than its queries. The columns
written here are the model's (services.core.models.MediaItem); tests/media/test_upload_rows.py keeps
the two in step.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING, Any

from services.core.errors import Conflict, NotFound, PermissionDenied
from services.media.library import MediaView

if TYPE_CHECKING:
    import psycopg

# media_items columns an upload writes; the rest have server defaults.
INSERT_COLUMNS = (
    "id",
    "organization_id",
    "uploaded_by",
    "type",
    "status",
    "r2_key",
    "filename",
    "mime_type",
    "file_size_bytes",
    "sha256",
)
# Each column as the array type unnest() reads it (enums travel as text and are cast after).
_ARRAY_TYPES = ("uuid", "uuid", "uuid", "text", "text", "text", "text", "text", "bigint", "text")
_CASTS = {"type": "::media_type", "status": "::media_status"}
# What the insert returns: MediaView's fields, in its order.
RETURNED_COLUMNS = tuple(f.name for f in dataclasses.fields(MediaView))

# One statement for any number of rows: each column is one array parameter.
INSERT_MEDIA = (
    f"INSERT INTO media_items ({', '.join(INSERT_COLUMNS)}) "
    f"SELECT {', '.join(c + _CASTS.get(c, '') for c in INSERT_COLUMNS)} "
    "FROM unnest(" + ", ".join(f"%s::{t}[]" for t in _ARRAY_TYPES) + f") AS v({', '.join(INSERT_COLUMNS)}) "
    f"RETURNING {', '.join(c + ('::text' if c in _CASTS else '') for c in RETURNED_COLUMNS)}"
)


def find_org_id(conn: psycopg.Connection[Any], ref: str) -> uuid.UUID:
    """The id of the organization `ref` names (slug or id), as services.core.lookup.resolve_org finds it."""
    as_id = _maybe_uuid(ref)
    if as_id is not None:
        row = conn.execute("SELECT id FROM organizations WHERE id = %s", (as_id,)).fetchone()
    else:
        row = conn.execute("SELECT id FROM organizations WHERE slug = %s", (ref.strip().lower(),)).fetchone()
    if row is None:
        raise NotFound(f"Organization {ref!r} not found.")
    return row[0]  # psycopg reads uuid columns as uuid.UUID


def find_operator_id(conn: psycopg.Connection[Any], email: str | None) -> uuid.UUID | None:
    """The uploading operator (optional here): a platform_owner user, as resolve_operator requires."""
    if not email:
        return None
    row = conn.execute(
        "SELECT id, role::text FROM users WHERE lower(email) = %s LIMIT 1", (email.strip().lower(),)
    ).fetchone()
    if row is None or row[1] != "platform_owner":
        raise PermissionDenied(f"Operator {email.strip()} is not a platform_owner user.")
    return row[0]  # psycopg reads uuid columns as uuid.UUID


def insert_media(conn: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> dict[uuid.UUID, MediaView]:
    """Insert `rows` (media_values dicts) and queue a processing job for each, in one transaction
    (issue #20); two statements whatever the number of rows. A broken rule is a Conflict or NotFound
    naming it; the caller's connection stays usable."""
    import psycopg

    from services.media.jobs import ENQUEUE_JOBS

    columns = [[row[c] for row in rows] for c in INSERT_COLUMNS]
    try:
        with conn.transaction():
            returned = conn.execute(INSERT_MEDIA, columns).fetchall()
            conn.execute(ENQUEUE_JOBS, {"ids": [r[0] for r in returned], "force": False})
    except psycopg.errors.IntegrityError as exc:
        raise _integrity_error(exc, rows) from None
    return {view.id: view for view in (MediaView(*r) for r in returned)}


def _integrity_error(exc: Exception, rows: list[dict[str, Any]]) -> Exception:
    """Say which rule a refused row broke: the organization or operator vanished, or a duplicate."""
    sqlstate = getattr(exc, "sqlstate", None)
    constraint = str(getattr(getattr(exc, "diag", None), "constraint_name", "") or "")
    if sqlstate == "23503":  # foreign_key_violation
        if "uploaded_by" in constraint:
            return NotFound("The uploading operator's account was deleted during the upload.")
        return NotFound("The organization was deleted during the upload.")
    ids = ", ".join(str(r["id"]) for r in rows)
    return Conflict(f"Media item {ids} already exists.")


def _maybe_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(ref))
    except ValueError:
        return None
