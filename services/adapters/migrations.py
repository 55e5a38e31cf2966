"""Schema migrations: upgrade, downgrade, status and drift check, on Alembic."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from services.core.errors import ValidationError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Engine


@dataclass
class MigrationStatus:
    current: str | None
    head: str | None
    pending: list[str] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        return not self.pending and self.current == self.head


@dataclass
class MigrateResult:
    before: str | None
    after: str | None
    applied: list[str]


def _config(engine: Engine | None = None, url: str | None = None, buffer: Any = None) -> Config:
    from alembic.config import Config

    cfg = Config(output_buffer=buffer) if buffer is not None else Config()
    cfg.set_main_option("script_location", str(resources.files("migrations")))
    target = url if url is not None else (engine.url.render_as_string(hide_password=False) if engine else "")
    cfg.set_main_option("sqlalchemy.url", target.replace("%", "%%"))
    return cfg


def _script(cfg: Config) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(cfg)


def _describe(script: ScriptDirectory, rev: str) -> str:
    revision = script.get_revision(rev)
    return f"{revision.revision} {revision.doc}" if revision is not None else rev


def _resolve(script: ScriptDirectory, rev: str) -> str:
    """Check that `rev` names a revision before anything touches the database."""
    from alembic.util import CommandError

    if rev in ("head", "base", "heads"):
        return rev
    if not rev.strip():
        raise ValidationError("Give a revision: head, base or an id that `codex db status` lists.")
    try:
        found = script.get_revision(rev)
    except (CommandError, ValueError) as exc:
        raise ValidationError(f"Unknown revision {rev!r}: {exc}") from None
    if found is None:
        raise ValidationError(f"Unknown revision {rev!r}; `codex db status` lists the known ones.")
    return found.revision


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def get_status(engine: Engine) -> MigrationStatus:
    """Current revision, head and the revisions still to apply (oldest first)."""
    script = _script(_config(engine))
    current = current_revision(engine)
    head = script.get_current_head()
    pending = [
        _describe(script, rev.revision)
        for rev in script.iterate_revisions(head, current or "base")
        if rev.revision != current
    ]
    pending.reverse()
    return MigrationStatus(current=current, head=head, pending=pending)


def _run(engine: Engine, action: str, target: str) -> None:
    from alembic import command

    cfg = _config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, target)


def migrate(engine: Engine, to: str = "head") -> MigrateResult:
    """Upgrade to `to` (default head) in one transaction; a no-op when already there."""
    script = _script(_config(engine))
    target = _resolve(script, to)
    before = current_revision(engine)
    status = get_status(engine)
    if target == "head" and status.up_to_date:
        return MigrateResult(before=before, after=before, applied=[])
    _run(engine, "upgrade", target)
    after = current_revision(engine)
    applied = (
        [
            _describe(script, rev.revision)
            for rev in script.iterate_revisions(after or "base", before or "base")
            if rev.revision != before
        ]
        if after
        else []
    )
    applied.reverse()
    return MigrateResult(before=before, after=after, applied=applied)


def downgrade(engine: Engine, to: str) -> MigrateResult:
    """Downgrade to revision `to` (or `base`) in one transaction."""
    script = _script(_config(engine))
    target = _resolve(script, to)
    before = current_revision(engine)
    _run(engine, "downgrade", target)
    after = current_revision(engine)
    removed = (
        [
            _describe(script, rev.revision)
            for rev in script.iterate_revisions(before or "base", after or "base")
            if rev.revision != after
        ]
        if before
        else []
    )
    return MigrateResult(before=before, after=after, applied=removed)


def offline_sql(url: str, to: str = "head", start: str | None = None) -> str:
    """The SQL `migrate` would run, without touching the database."""
    from alembic import command

    buffer = io.StringIO()
    cfg = _config(url="postgresql+psycopg://offline/codex", buffer=buffer)
    target = _resolve(_script(cfg), to)
    command.upgrade(cfg, f"{start}:{target}" if start else target, sql=True)
    return buffer.getvalue()


def check_drift(engine: Engine) -> list[str]:
    """Differences between the models and the live database, one readable line each."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from services.core.models import Base

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, Base.metadata)
    return [_format_diff(d) for d in _flatten(diffs)]


def _flatten(diffs: list[Any]) -> list[Any]:
    out: list[Any] = []
    for diff in diffs:
        if isinstance(diff, list):
            out.extend(diff)
        else:
            out.append(diff)
    return out


def _format_diff(diff: tuple[Any, ...]) -> str:
    kind = diff[0]
    if kind in ("add_table", "remove_table"):
        verb = "missing in database" if kind == "add_table" else "not in models"
        return f"table {diff[1].name}: {verb}"
    if kind in ("add_column", "remove_column"):
        verb = "missing in database" if kind == "add_column" else "not in models"
        return f"column {diff[2]}.{diff[3].name}: {verb}"
    if kind in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        obj = diff[1]
        verb = "missing in database" if kind.startswith("add") else "not in models"
        what = "index" if "index" in kind else "constraint"
        return f"{what} {obj.name} on {obj.table.name}: {verb}"
    if kind in ("add_fk", "remove_fk"):
        fk = diff[1]
        verb = "missing in database" if kind == "add_fk" else "not in models"
        return f"foreign key {fk.name} on {fk.parent.name}: {verb}"
    if kind.startswith("modify_"):
        _, _schema, table, column, _info, old, new = diff
        what = kind.removeprefix("modify_")
        return f"column {table}.{column}: {what} is {old!r} in database, {new!r} in models"
    return f"{kind}: {diff[1:]!r}"
