"""Seeding: the platform owner with an organization, and the initial categories. Both idempotent."""

from __future__ import annotations

import json
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert

from services.adapters.locks import lock_key
from services.core.audit import record_audit
from services.core.errors import ValidationError
from services.core.lookup import find_user_by_email
from services.core.models import (
    Category,
    MemberRole,
    Organization,
    OrganizationMember,
    User,
    UserRole,
    VerificationToken,
)
from services.core.patterns import EMAIL_PATTERN, SLUG_PATTERN

if TYPE_CHECKING:
    from services.bootstrap import Container

INVITE_TTL = timedelta(hours=1)
SEED_ACTOR = "codex seed"

DEFAULT_CATEGORIES: tuple[dict[str, Any], ...] = (
    {"name": "Film", "slug": "film", "description": "Short and feature films.", "sort_order": 10},
    {
        "name": "Documentary",
        "slug": "documentary",
        "description": "Documentaries and reportage.",
        "sort_order": 20,
    },
    {"name": "Music", "slug": "music", "description": "Concerts, albums and sessions.", "sort_order": 30},
    {"name": "Podcasts", "slug": "podcasts", "description": "Audio shows and interviews.", "sort_order": 40},
    {"name": "Courses", "slug": "courses", "description": "Lessons and tutorials.", "sort_order": 50},
    {"name": "Talks", "slug": "talks", "description": "Lectures, keynotes and panels.", "sort_order": 60},
)


SLUG_MAX = 100
# Letters NFKD does not split into an ASCII base letter plus accents.
_NOT_DECOMPOSABLE = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "þ": "th",
        "Þ": "TH",
        "ı": "i",
    }
)


def slugify(value: str) -> str:
    """`"Café & Crème: Part 2!"` -> `"cafe-creme-part-2"`, `"Don't Panic"` -> `"dont-panic"`.

    Accents are folded to ASCII, apostrophes dropped (no `don-t`), every other run of non-alphanumerics
    becomes one hyphen; at most SLUG_MAX characters, cut at a hyphen. Empty when nothing is left
    (a title in a non-Latin script): callers ask for an explicit slug then.
    """
    folded = unicodedata.normalize("NFKD", value.translate(_NOT_DECOMPOSABLE))
    ascii_text = folded.encode("ascii", "ignore").decode().lower()
    ascii_text = re.sub(r"(?<=[a-z0-9])'(?=[a-z0-9])", "", ascii_text.replace("\u2019", "'"))
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    if len(slug) > SLUG_MAX:
        cut = slug[: SLUG_MAX + 1]
        slug = cut.rsplit("-", 1)[0] if "-" in cut else slug[:SLUG_MAX]
    return slug.strip("-")


# --- platform owner --------------------------------------------------------------------------------


@dataclass
class SeedOwnerResult:
    user_id: str
    email: str
    organization_id: str
    organization_slug: str
    changes: list[str] = field(default_factory=list)
    invite_sent: bool | None = None
    invite_error: str | None = None
    invite_expires_at: datetime | None = None

    @property
    def unchanged(self) -> bool:
        return not self.changes


def seed_owner(
    container: Container,
    email: str,
    name: str,
    org_name: str | None = None,
    org_slug: str | None = None,
    send_invite: bool = False,
) -> SeedOwnerResult:
    """Create (or promote) the platform owner, their organization and membership; optionally invite."""
    email = (email or "").strip()
    name = (name or "").strip()
    if not re.match(EMAIL_PATTERN, email):
        raise ValidationError(f"{email!r} is not a valid email address.")
    if not name:
        raise ValidationError("The owner's name must not be empty.")
    org_name = (org_name or "").strip() or "Codex"
    slug = (org_slug or "").strip().lower() or slugify(org_name)
    if not re.fullmatch(SLUG_PATTERN, slug):
        raise ValidationError(f"Organization slug {slug!r} must be lower-case letters, digits and hyphens.")

    changes: list[str] = []
    expires: datetime | None = None
    with container.uow() as uow:
        db = uow.session
        # Two seeds at once (a deploy script run twice) wait for each other instead of failing on the
        # unique indexes; the second one then finds the rows and changes nothing.
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key("codex-seed-owner")})
        user = find_user_by_email(db, email)
        if user is None:
            user = User(email=email, name=name, role=UserRole.platform_owner, email_verified=True)
            db.add(user)
            changes.append("user created")
        else:
            db.refresh(user, with_for_update=True)
            if user.role != UserRole.platform_owner:
                user.role = UserRole.platform_owner
                changes.append("user promoted to platform_owner")
            if not user.email_verified:
                user.email_verified = True
                changes.append("email marked verified")
        org = db.scalars(select(Organization).where(Organization.slug == slug)).first()
        if org is None:
            org = Organization(name=org_name, slug=slug)
            db.add(org)
            changes.append(f"organization {slug} created")
        db.flush()
        membership = db.scalars(
            select(OrganizationMember)
            .where(OrganizationMember.organization_id == org.id, OrganizationMember.user_id == user.id)
            .with_for_update()
        ).first()
        if membership is None:
            db.add(OrganizationMember(organization_id=org.id, user_id=user.id, role=MemberRole.owner))
            changes.append("owner membership created")
        elif membership.role != MemberRole.owner:
            membership.role = MemberRole.owner
            changes.append("membership made owner")
        token = None
        if send_invite:
            token = secrets.token_urlsafe(32)
            expires = datetime.now(UTC) + INVITE_TTL
            invite = VerificationToken(user_id=user.id, token=token, expires_at=expires)
            db.add(invite)
        if changes:
            record_audit(db, user, "seed.owner", "user", user.id, {"changes": changes, "organization": slug})
        queued = None
        if expires is not None:
            # The token itself stays out of the audit log: it is a credential until it expires.
            record_audit(db, user, "seed.owner.invite", "user", user.id, {"expires_at": expires.isoformat()})
            from services.email.outbox import queue_email

            db.flush()  # the token's id keys the email: one invite, one email
            # Queued with the token, in its transaction: the link works when the email arrives.
            reset_url = f"{container.settings.app_url.rstrip('/')}/reset-password?token={token}"
            queued = queue_email(
                db,
                "password-reset",
                email,
                {"userName": user.name, "resetUrl": reset_url},
                idempotency_key=f"owner-invite-{invite.id}",
            )
        uow.commit()
        result = SeedOwnerResult(
            user_id=str(user.id),
            email=user.email,
            organization_id=str(org.id),
            organization_slug=org.slug,
            changes=changes,
        )

    if queued is not None:
        from services.email.outbox import deliver_now

        delivery = deliver_now(container, queued)
        result.invite_sent = delivery is not None and delivery.status == "sent"
        result.invite_error = None if result.invite_sent or delivery is None else delivery.error
        result.invite_expires_at = expires
    return result


# --- categories ------------------------------------------------------------------------------------


@dataclass
class SeedCategoriesResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    dry_run: bool = False
    source: str = "built-in defaults"


def load_category_file(path: Path) -> list[dict[str, Any]]:
    """A YAML or JSON list of {name, slug, description, sort_order} mappings."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"{path} is not a text file (not valid UTF-8 at byte {exc.start + 1}); give a YAML or JSON list."
        ) from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (ValueError, Exception) as exc:  # yaml.YAMLError or json.JSONDecodeError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValidationError(
            f"{path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {first}"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("categories"), list):
        data = data["categories"]
    if not isinstance(data, list):
        raise ValidationError(f"{path} must hold a list of categories (name, slug, description, sort_order).")
    return data


def _normalise(items: list[Any]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ValidationError(f"Category #{index} must be a mapping with at least a name.")
        name = str(item.get("name") or "").strip()
        if not name:
            raise ValidationError(f"Category #{index} has no name.")
        slug = str(item.get("slug") or "").strip().lower() or slugify(name)
        if not re.fullmatch(SLUG_PATTERN, slug):
            raise ValidationError(
                f"Category #{index} ({name}): slug {slug!r} must be lower-case letters, digits and hyphens."
            )
        try:
            sort_order = int(item.get("sort_order", item.get("sortOrder", index * 10)))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValidationError(f"Category #{index} ({name}): sort_order must be a whole number.") from None
        if slug in rows:
            raise ValidationError(f"Category slug {slug!r} appears twice.")
        description = item.get("description")
        rows[slug] = {
            "name": name,
            "slug": slug,
            "sort_order": sort_order,
            "description": str(description).strip() if description else None,
        }
    return list(rows.values())


def seed_categories(
    container: Container,
    items: list[Any] | None = None,
    by: str | None = None,
    dry_run: bool = False,
    source: str | None = None,
) -> SeedCategoriesResult:
    """Upsert categories by slug in one transaction; reports created, updated and unchanged slugs."""
    rows = _normalise(list(items) if items is not None else list(DEFAULT_CATEGORIES))
    result = SeedCategoriesResult(dry_run=dry_run, source=source or "built-in defaults")
    with container.uow() as uow:
        db = uow.session
        actor: Any = SEED_ACTOR
        if by:
            from services.core.lookup import resolve_operator

            actor = resolve_operator(db, by)
        existing = {
            c.slug: c
            for c in db.scalars(
                select(Category).where(Category.slug.in_([r["slug"] for r in rows])).with_for_update()
            )
        }
        changed = []
        for row in rows:
            current = existing.get(row["slug"])
            if current is None:
                result.created.append(row["slug"])
                changed.append(row)
            elif (current.name, current.description, current.sort_order) != (
                row["name"],
                row["description"],
                row["sort_order"],
            ):
                result.updated.append(row["slug"])
                changed.append(row)
            else:
                result.unchanged.append(row["slug"])
        if dry_run or not changed:
            return result
        statement = insert(Category).values(changed)
        db.execute(
            statement.on_conflict_do_update(
                index_elements=[Category.slug],
                set_={
                    "name": statement.excluded.name,
                    "description": statement.excluded.description,
                    "sort_order": statement.excluded.sort_order,
                    "updated_at": datetime.now(UTC),
                },
            )
        )
        record_audit(
            db,
            actor,
            "seed.categories",
            "categories",
            None,
            {"created": result.created, "updated": result.updated, "source": result.source},
        )
        uow.commit()
    return result
