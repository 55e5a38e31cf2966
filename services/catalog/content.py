"""The content catalog of an organization: create, list, show, update, publish, unpublish, soft delete.

Every query is scoped by organization: an id from another organization is "not found".
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from services.catalog.seeding import slugify
from services.core.audit import record_audit
from services.core.checkout_limits import check_checkout_price
from services.core.errors import Conflict, NotFound, ValidationError
from services.core.lookup import parse_uuid, resolve_operator, resolve_org
from services.core.models import (
    Category,
    Content,
    ContentPurchase,
    ContentStatus,
    ContentTag,
    MediaItem,
    MediaStatus,
    Organization,
    PurchaseStatus,
    Tag,
)
from services.core.money import format_money
from services.core.patterns import MULTILINE_FORBIDDEN, ONE_LINE_FORBIDDEN

if TYPE_CHECKING:
    from services.bootstrap import Container

TITLE_RANGE = (3, 255)
DESCRIPTION_RANGE = (10, 5000)
MAX_TAGS = 10
MAX_TAG_LENGTH = 50
MAX_PAGE = 500
# Stripe Checkout's largest amount (99,999,999 of the smallest unit); also far inside the INTEGER column.
MAX_PRICE_CENTS = 99_999_999
# PostgreSQL text cannot hold NUL; other control characters and bidi overrides only hide in a field.
_CONTROL = re.compile(ONE_LINE_FORBIDDEN)
_CONTROL_MULTILINE = re.compile(MULTILINE_FORBIDDEN)


@dataclass
class ContentView:
    id: str
    organization: str
    media_item_id: str
    title: str
    slug: str
    description: str
    price_cents: int
    currency: str
    price: str
    status: str
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    thumbnail_r2_key: str | None = None
    published_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class ContentPage:
    items: list[ContentView]
    next_cursor: str | None


# --- validation ------------------------------------------------------------------------------------


def _title(value: str) -> str:
    title = (value or "").strip()
    low, high = TITLE_RANGE
    if not low <= len(title) <= high:
        raise ValidationError(f"Title must be {low} to {high} characters (got {len(title)}).")
    if _CONTROL.search(title):
        raise ValidationError(
            "Title must not contain control characters (tabs, newlines, NUL) or bidi overrides."
        )
    return title


def _description(value: str) -> str:
    text = (value or "").strip()
    low, high = DESCRIPTION_RANGE
    if not low <= len(text) <= high:
        raise ValidationError(f"Description must be {low} to {high} characters (got {len(text)}).")
    if _CONTROL_MULTILINE.search(text):
        raise ValidationError(
            "Description must not contain control characters (but newlines and tabs) or bidi overrides."
        )
    return text


def _price(value: int) -> int:
    if value is None or not 0 <= int(value) <= MAX_PRICE_CENTS:
        raise ValidationError(f"Price must be a whole number of cents from 0 to {MAX_PRICE_CENTS:,}.")
    return int(value)


def _currency(value: str) -> str:
    code = (value or "").strip().lower()
    if not re.fullmatch(r"[a-z]{3}", code):
        raise ValidationError(f"Currency {value!r} must be a three-letter code such as usd or eur.")
    return code


def _slug(value: str, what: str = "Slug") -> str:
    slug = slugify(value)
    if not slug:
        if what == "Title":
            raise ValidationError(
                f"Title {value!r} has no letters or digits to make a slug from; give a slug.", field="slug"
            )
        raise ValidationError(f"{what} {value!r} has no letters or digits to make a slug from.")
    return slug


def _tag_names(tags: list[str]) -> dict[str, str]:
    """slug -> display name, de-duplicated; at most MAX_TAGS."""
    names: dict[str, str] = {}
    for raw in tags:
        name = " ".join((raw or "").split())
        if not name:
            continue
        if _CONTROL.search(name):
            raise ValidationError("Tags must not contain control characters or bidi overrides.")
        if len(name) > MAX_TAG_LENGTH:
            raise ValidationError(f"Tag {name[:20]!r}... is longer than {MAX_TAG_LENGTH} characters.")
        names.setdefault(_slug(name, "Tag"), name)
    if len(names) > MAX_TAGS:
        raise ValidationError(f"At most {MAX_TAGS} tags per content item (got {len(names)}).")
    return names


# --- lookups ---------------------------------------------------------------------------------------


def _content(db: Any, org: Organization, content_ref: str, lock: bool = False) -> Content:
    """Live content of `org` by id or slug; anything else (another org's id too) is not found."""
    ref = (content_ref or "").strip()
    try:
        by = Content.id == uuid.UUID(ref)
    except ValueError:
        if not ref:
            raise ValidationError("Give a content id or slug.") from None
        by = Content.slug == ref.lower()
    query = select(Content).where(by, Content.organization_id == org.id, Content.deleted_at.is_(None))
    row = db.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"Content not found: {ref} is not in organization {org.slug}.")
    return row


def _media(db: Any, org: Organization, media_id: str) -> MediaItem:
    media = db.scalars(
        select(MediaItem).where(
            MediaItem.id == parse_uuid(media_id, "media item id"),
            MediaItem.organization_id == org.id,
            MediaItem.deleted_at.is_(None),
        )
    ).first()
    if media is None:
        raise NotFound(
            f"Media item not found: {media_id} is not a live media item of organization {org.slug}."
        )
    return media


def _category(db: Any, slug: str | None) -> Category | None:
    if not slug:
        return None
    category = db.scalars(select(Category).where(Category.slug == slug.strip().lower())).first()
    if category is None:
        raise NotFound(f"Category {slug!r} not found; `codex seed categories` creates them.")
    return category


def _slug_taken(org_slug: str, slug: str) -> Conflict:
    return Conflict(
        f"Slug {slug!r} already exists in organization {org_slug}: choose another title or give a slug.",
        field="slug",
    )


def _ensure_slug_free(db: Any, org: Organization, slug: str, except_id: uuid.UUID | None = None) -> None:
    query = select(Content.id).where(
        Content.organization_id == org.id, Content.slug == slug, Content.deleted_at.is_(None)
    )
    if except_id is not None:
        query = query.where(Content.id != except_id)
    if db.scalars(query).first() is not None:
        raise _slug_taken(org.slug, slug)


def _set_tags(db: Any, org: Organization, content: Content, names: dict[str, str]) -> None:
    """Replace the content's tags; tags are created per organization as needed (one insert, one select).

    New tags are inserted in slug order: two operators adding the same new tags to different items
    then wait for each other in one order instead of deadlocking."""
    db.execute(cast(Table, ContentTag.__table__).delete().where(ContentTag.content_id == content.id))
    if not names:
        return
    db.execute(
        insert(Tag)
        .values(
            [{"organization_id": org.id, "slug": slug, "name": name} for slug, name in sorted(names.items())]
        )
        .on_conflict_do_nothing(index_elements=[Tag.organization_id, Tag.slug])
    )
    tag_ids = db.scalars(select(Tag.id).where(Tag.organization_id == org.id, Tag.slug.in_(list(names))))
    db.execute(insert(ContentTag).values([{"content_id": content.id, "tag_id": t} for t in tag_ids]))


def _views(db: Any, org: Organization, rows: list[Content]) -> list[ContentView]:
    """Views with tags and category slugs, in two queries whatever the number of rows."""
    ids = [r.id for r in rows]
    tags: dict[uuid.UUID, list[str]] = {i: [] for i in ids}
    if ids:
        for content_id, name in db.execute(
            select(ContentTag.content_id, Tag.name)
            .join(Tag, Tag.id == ContentTag.tag_id)
            .where(ContentTag.content_id.in_(ids))
            .order_by(Tag.name)
        ):
            tags[content_id].append(name)
    category_ids = {r.category_id for r in rows if r.category_id}
    categories = (
        dict(db.execute(select(Category.id, Category.slug).where(Category.id.in_(category_ids))).all())
        if category_ids
        else {}
    )
    return [
        ContentView(
            id=str(r.id),
            organization=org.slug,
            media_item_id=str(r.media_item_id),
            title=r.title,
            slug=r.slug,
            description=r.description,
            price_cents=r.price_cents,
            currency=r.currency,
            price=format_money(r.price_cents, r.currency),
            status=r.status.value,
            category=categories.get(r.category_id),
            tags=tags[r.id],
            thumbnail_r2_key=r.thumbnail_r2_key,
            published_at=r.published_at,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
        for r in rows
    ]


def _locked(
    container: Container, db: Any, org_ref: str, content_id: str, by: str | None
) -> tuple[Any, Organization, Content]:
    """The operator, the organization and the content row locked FOR UPDATE, for a change to one item."""
    operator = resolve_operator(db, container.settings.operator_email(by))
    org = resolve_org(db, org_ref)
    return operator, org, _content(db, org, content_id, lock=True)


@contextmanager
def _slug_race(org_slug: str, slug: str) -> Iterator[None]:
    """Two operators creating the same slug at once: the unique index decides, the loser gets Conflict.

    Takes the organization's slug as a string: after the failed flush the session is rolled back and
    reading an attribute of a loaded row would raise instead."""
    try:
        yield
    except IntegrityError as exc:
        if "uq_content_org_slug_live" in str(exc.orig):
            raise _slug_taken(org_slug, slug) from None
        raise


# --- operations ------------------------------------------------------------------------------------


def create_content(
    container: Container,
    org_ref: str,
    media_id: str,
    title: str,
    description: str,
    price_cents: int,
    currency: str = "usd",
    category: str | None = None,
    tags: list[str] | None = None,
    slug: str | None = None,
    by: str | None = None,
) -> ContentView:
    """A draft content item for a media item of the same organization (its medium thumbnail, if any)."""
    from services.media.jobs import medium_thumbnail

    title, description = _title(title), _description(description)
    price_cents, currency = _price(price_cents), _currency(currency)
    check_checkout_price(price_cents, currency)
    names = _tag_names(tags or [])
    wanted_slug = _slug(slug) if slug else _slug(title, "Title")
    with container.uow() as uow:
        db = uow.session
        operator = resolve_operator(db, container.settings.operator_email(by))
        org = resolve_org(db, org_ref)
        media = _media(db, org, media_id)
        category_row = _category(db, category)
        _ensure_slug_free(db, org, wanted_slug)
        row = Content(
            organization_id=org.id,
            media_item_id=media.id,
            category_id=category_row.id if category_row else None,
            title=title,
            slug=wanted_slug,
            description=description,
            price_cents=price_cents,
            currency=currency,
            status=ContentStatus.draft,
            thumbnail_r2_key=medium_thumbnail(container.object_store, media),  # issue #20
        )
        db.add(row)
        with _slug_race(org.slug, wanted_slug):
            db.flush()
        _set_tags(db, org, row, names)
        record_audit(
            db,
            operator,
            "content.create",
            "content",
            row.id,
            {"organization": org.slug, "slug": wanted_slug, "price_cents": price_cents},
        )
        uow.commit()
        db.refresh(row)
        return _views(db, org, [row])[0]


def list_content(
    container: Container, org_ref: str, status: str | None = None, limit: int = 50, cursor: str | None = None
) -> ContentPage:
    """Live content of an organization, newest first, keyset-paginated."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"The page size must be between 1 and {MAX_PAGE}.", field="limit")
    with container.uow() as uow:
        db = uow.session
        org = resolve_org(db, org_ref)
        query = select(Content).where(Content.organization_id == org.id, Content.deleted_at.is_(None))
        if status:
            try:
                query = query.where(Content.status == ContentStatus(status.strip().lower()))
            except ValueError:
                choices = ", ".join(s.value for s in ContentStatus)
                raise ValidationError(f"Unknown status {status!r}: use one of {choices}.") from None
        if cursor:
            created, cursor_id = _parse_cursor(cursor)
            query = query.where(
                (Content.created_at < created) | ((Content.created_at == created) & (Content.id < cursor_id))
            )
        rows = list(db.scalars(query.order_by(Content.created_at.desc(), Content.id.desc()).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = f"{rows[-1].created_at.isoformat()}~{rows[-1].id}" if more and rows else None
        return ContentPage(items=_views(db, org, rows), next_cursor=next_cursor)


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, raw_id = cursor.partition("~")
        return datetime.fromisoformat(created), uuid.UUID(raw_id)
    except ValueError:
        raise ValidationError(
            f"Invalid cursor {cursor!r}: pass the value a previous page printed.", field="cursor"
        ) from None


def get_content(container: Container, org_ref: str, content_id: str) -> ContentView:
    with container.uow() as uow:
        org = resolve_org(uow.session, org_ref)
        return _views(uow.session, org, [_content(uow.session, org, content_id)])[0]


def update_content(
    container: Container,
    org_ref: str,
    content_id: str,
    *,
    title: str | None = None,
    description: str | None = None,
    price_cents: int | None = None,
    currency: str | None = None,
    category: str | None = None,
    tags: list[str] | None = None,
    slug: str | None = None,
    by: str | None = None,
) -> ContentView:
    """Change what is given; the slug changes only with `slug` (links keep working)."""
    with container.uow() as uow:
        db = uow.session
        operator, org, row = _locked(container, db, org_ref, content_id, by)
        changes: dict[str, Any] = {}
        if title is not None:
            row.title = changes["title"] = _title(title)
        if description is not None:
            row.description = _description(description)
            changes["description"] = True
        if price_cents is not None:
            row.price_cents = changes["price_cents"] = _price(price_cents)
        if currency is not None:
            row.currency = changes["currency"] = _currency(currency)
        if price_cents is not None or currency is not None:
            check_checkout_price(row.price_cents, row.currency)
        if category is not None:
            category_row = _category(db, category) if category else None
            row.category_id = category_row.id if category_row else None
            changes["category"] = category or None
        if slug is not None:
            new_slug = _slug(slug)
            _ensure_slug_free(db, org, new_slug, except_id=row.id)
            row.slug = changes["slug"] = new_slug
            with _slug_race(org.slug, new_slug):
                db.flush()
        if tags is not None:
            names = _tag_names(tags)
            _set_tags(db, org, row, names)
            changes["tags"] = sorted(names.values())
        if not changes:
            raise ValidationError(
                "Nothing to update: give at least one new value (title, description, price, currency, "
                "category, tags or slug)."
            )
        row.updated_at = datetime.now(UTC)
        record_audit(db, operator, "content.update", "content", row.id, {"organization": org.slug, **changes})
        with _slug_race(org.slug, row.slug):
            uow.commit()
        db.refresh(row)
        return _views(db, org, [row])[0]


def publish_content(
    container: Container, org_ref: str, content_id: str, by: str | None = None
) -> ContentView:
    """Published content can be bought; its media item must be `ready`."""
    with container.uow() as uow:
        db = uow.session
        operator, org, row = _locked(container, db, org_ref, content_id, by)
        media = db.get(MediaItem, row.media_item_id)
        if media is None or media.deleted_at is not None or media.status != MediaStatus.ready:
            shown = "deleted" if media is None or media.deleted_at else media.status.value
            raise Conflict(
                f"Media not ready: media item {row.media_item_id} is {shown}; publish once it is ready."
            )
        if row.status != ContentStatus.published:
            row.status = ContentStatus.published
            row.published_at = datetime.now(UTC)
            record_audit(db, operator, "content.publish", "content", row.id, {"organization": org.slug})
        uow.commit()
        db.refresh(row)
        return _views(db, org, [row])[0]


def unpublish_content(
    container: Container, org_ref: str, content_id: str, by: str | None = None
) -> ContentView:
    """Back to draft: no new purchases; customers who bought it keep access."""
    with container.uow() as uow:
        db = uow.session
        operator, org, row = _locked(container, db, org_ref, content_id, by)
        if row.status != ContentStatus.draft:
            row.status = ContentStatus.draft
            record_audit(db, operator, "content.unpublish", "content", row.id, {"organization": org.slug})
        uow.commit()
        db.refresh(row)
        return _views(db, org, [row])[0]


def delete_content(
    container: Container, org_ref: str, content_id: str, by: str | None = None, dry_run: bool = False
) -> ContentView:
    """Soft delete, refused while customers hold completed (unrefunded) purchases of it, or a checkout
    of it is still pending."""
    with container.uow() as uow:
        db = uow.session
        operator, org, row = _locked(container, db, org_ref, content_id, by)
        counts = dict(
            db.execute(
                select(ContentPurchase.status, func.count())
                .where(
                    ContentPurchase.content_id == row.id,
                    ContentPurchase.status.in_([PurchaseStatus.completed, PurchaseStatus.pending]),
                    ContentPurchase.refunded_at.is_(None),
                )
                .group_by(ContentPurchase.status)
            ).all()
        )
        if owned := counts.get(PurchaseStatus.completed, 0):
            raise Conflict(
                f"Cannot delete content with completed purchases: {row.slug} has {owned}; "
                "unpublish it instead."
            )
        # A checkout in flight would complete a purchase of deleted content; reconcile settles it.
        if pending := counts.get(PurchaseStatus.pending, 0):
            raise Conflict(
                f"Content {row.slug} has {pending} checkout(s) in progress; retry once they complete or "
                "expire (`codex reconcile` settles old ones)."
            )
        view = _views(db, org, [row])[0]
        if dry_run:
            return view
        row.deleted_at = datetime.now(UTC)
        row.status = ContentStatus.archived
        record_audit(
            db, operator, "content.delete", "content", row.id, {"organization": org.slug, "slug": row.slug}
        )
        uow.commit()
        view.status = ContentStatus.archived.value
        return view
