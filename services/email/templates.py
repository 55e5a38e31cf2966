"""Email templates: the catalog of keys and variables, Jinja2 rendering, and database overrides.

File templates live in the `templates` package (`templates/email/<key>/subject.txt|body.html|body.txt`,
HTML bodies extending `_layout.html`); a row in `email_templates` with the same key replaces all three.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.core.errors import NotFound, ValidationError
from services.core.money import Money, format_money

if TYPE_CHECKING:
    from jinja2 import Environment, Template

    from services.bootstrap import Container

PARTS = ("subject", "html", "text")
_PART_FILES = {"subject": "subject.txt", "html": "body.html", "text": "body.txt"}
_PART_NAMES = {"subject": "subject", "html": "HTML body", "text": "text body"}


@dataclass(frozen=True)
class TemplateVariable:
    name: str
    kind: str  # "text", "url", "money" or "date": how preview/send-test read `--data` values
    sample: str  # a sample value for previews, in the form `--data` takes


@dataclass(frozen=True)
class TemplateSpec:
    key: str
    description: str
    variables: tuple[TemplateVariable, ...]

    @property
    def variable_names(self) -> list[str]:
        return [v.name for v in self.variables]


def _v(name: str, kind: str, sample: str) -> TemplateVariable:
    return TemplateVariable(name, kind, sample)


CATALOG: dict[str, TemplateSpec] = {
    spec.key: spec
    for spec in (
        TemplateSpec(
            "email-verification",
            "Asks a new user to confirm their email address.",
            (
                _v("userName", "text", "Jane Doe"),
                _v("verificationUrl", "url", "{app}/verify-email?token=sample"),
            ),
        ),
        TemplateSpec(
            "password-reset",
            "Password reset link (expires in 1 hour).",
            (_v("userName", "text", "Jane Doe"), _v("resetUrl", "url", "{app}/reset-password?token=sample")),
        ),
        TemplateSpec(
            "purchase-receipt",
            "Receipt after a completed purchase, with the link to watch.",
            (
                _v("customerName", "text", "Jane Doe"),
                _v("contentTitle", "text", "Intro to Pottery"),
                _v("amount", "money", "9.99 usd"),
                _v("purchaseDate", "date", "2026-11-26"),
                _v("accessUrl", "url", "{app}/library"),
            ),
        ),
        TemplateSpec(
            "refund-confirmation",
            "Refund processed: amount, 5-10 business days, access ended.",
            (
                _v("customerName", "text", "Jane Doe"),
                _v("contentTitle", "text", "Intro to Pottery"),
                _v("refundAmount", "money", "9.99 usd"),
                _v("refundDate", "date", "2026-11-26"),
            ),
        ),
    )
}


def template_spec(key: str) -> TemplateSpec:
    """The catalog entry for `key`; ValidationError naming the known keys otherwise."""
    spec = CATALOG.get(key)
    if spec is None:
        raise ValidationError(f"Unknown email template {key!r}; known templates: {', '.join(CATALOG)}.")
    return spec


# --- value formatting: money and dates are formatted here, once ---


def format_date(value: Any) -> str:
    """`datetime(2026, 11, 26, ...)` -> `November 26, 2026` (aware datetimes in UTC); ISO strings too."""
    if value is None or _is_undefined(value):
        return ""
    if isinstance(value, str):
        parsed = _parse_iso(value)
        if parsed is None:
            return value
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        value = value.date()
    if isinstance(value, date):
        return f"{value:%B} {value.day}, {value.year}"
    return str(value)


def format_amount(value: Any) -> str:
    """Money -> `$9.99`; `{"cents": 999, "currency": "eur"}` too; anything else as text."""
    if value is None or _is_undefined(value):
        return ""
    if isinstance(value, Money):
        return str(value)
    if isinstance(value, dict) and "cents" in value:
        return format_money(int(value["cents"]), str(value.get("currency") or "usd"))
    return str(value)


def _parse_iso(text: str) -> datetime | date | None:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def _is_undefined(value: Any) -> bool:
    from jinja2 import Undefined

    return isinstance(value, Undefined)


def _finalize(value: Any) -> Any:
    """Every `{{ ... }}` output: None -> "", Money -> `$9.99`, dates -> `November 26, 2026`."""
    if value is None:
        return ""
    if isinstance(value, Money):
        return str(value)
    if isinstance(value, datetime | date):
        return format_date(value)
    return value


# --- sources ---


@dataclass(frozen=True)
class TemplateOverride:
    """The three parts stored in `email_templates` for one key."""

    key: str
    subject: str
    html: str
    text: str
    updated_at: datetime | None = None


def file_source(key: str, part: str) -> str:
    """The packaged source of one part of a file template."""
    template_spec(key)
    return _read_resource(f"{key}/{_PART_FILES[part]}")


def _read_resource(name: str) -> str:
    from importlib.resources import files

    try:
        node: Any = files("templates").joinpath("email")
    except NotADirectoryError:
        # An editable install made before templates/__init__.py existed maps `templates` as a namespace
        # with a placeholder path entry that importlib.resources cannot read; use the real directory.
        import templates

        node = next(Path(p) for p in templates.__path__ if Path(p).is_dir()) / "email"
    for piece in name.split("/"):
        node = node.joinpath(piece)
    return node.read_text(encoding="utf-8")


def _environment(html: bool, globals_: dict[str, Any]) -> Environment:
    from jinja2 import BaseLoader, ChainableUndefined, Environment, TemplateNotFound

    class PackageLoader(BaseLoader):
        """Reads templates/email/* through importlib.resources (works from a wheel or a zip)."""

        def get_source(self, environment: Environment, template: str) -> tuple[str, str | None, Any]:
            if ".." in template.split("/"):
                raise TemplateNotFound(template)
            try:
                return _read_resource(template), None, lambda: True
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise TemplateNotFound(template) from None

    env = Environment(
        loader=PackageLoader(),
        autoescape=html,
        undefined=ChainableUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["money"] = format_amount
    env.filters["date"] = format_date
    env.globals.update(globals_)
    return env


@dataclass(frozen=True)
class RenderedEmail:
    key: str
    subject: str
    html: str
    text: str
    overridden: bool = False
    data: dict[str, Any] = field(default_factory=dict)


class EmailRenderer:
    """Compiles and renders templates; HTML autoescaped, subject and text not."""

    def __init__(self, app_url: str = "", product_name: str = "Codex") -> None:
        globals_ = {"appUrl": app_url.rstrip("/"), "productName": product_name}
        self._html_env = _environment(True, globals_)
        self._text_env = _environment(False, globals_)
        self._cache: dict[tuple[str, str], Template] = {}

    def _env(self, part: str) -> Environment:
        return self._html_env if part == "html" else self._text_env

    def compile(self, part: str, source: str) -> Template:
        """Compile one part; a syntax error becomes a ValidationError with the line number."""
        from jinja2 import TemplateSyntaxError

        try:
            return self._env(part).from_string(source)
        except TemplateSyntaxError as exc:
            raise ValidationError(
                f"The {_PART_NAMES[part]} has a template syntax error on line {exc.lineno}: {exc.message}."
            ) from None

    def _file_template(self, key: str, part: str) -> Template:
        cached = self._cache.get((key, part))
        if cached is None:
            cached = self._env(part).get_template(f"{key}/{_PART_FILES[part]}")
            self._cache[(key, part)] = cached
        return cached

    def render(
        self, key: str, data: dict[str, Any], override: TemplateOverride | None = None
    ) -> RenderedEmail:
        template_spec(key)
        values = dict(data)
        out: dict[str, str] = {}
        for part in PARTS:
            if override is not None:
                template = self.compile(part, getattr(override, part))
            else:
                template = self._file_template(key, part)
            out[part] = template.render(values)
        # One line, no control characters: a subject is a header.
        subject = " ".join(out["subject"].split())
        return RenderedEmail(
            key=key,
            subject=subject,
            html=out["html"],
            text=out["text"].strip() + "\n",
            overridden=override is not None,
            data=values,
        )


# --- overrides in the database ---


def load_override(session: Any, key: str) -> TemplateOverride | None:
    from sqlalchemy import select

    from services.core.models import EmailTemplate

    row = session.scalars(select(EmailTemplate).where(EmailTemplate.key == key)).first()
    if row is None:
        return None
    return TemplateOverride(row.key, row.subject, row.html_body, row.text_body, row.updated_at)


def sample_data(key: str, app_url: str = "") -> dict[str, Any]:
    """Sample values for every variable of `key` (for previews and validation)."""
    spec = template_spec(key)
    return coerce_data(key, {v.name: v.sample.replace("{app}", app_url.rstrip("/")) for v in spec.variables})


_MONEY_TEXT = re.compile(r"^\s*(?P<num>\d+(?:\.\d{1,2})?)\s*(?P<cur>[A-Za-z]{3})?\s*$")


def coerce_data(key: str, raw: dict[str, str]) -> dict[str, Any]:
    """Turn `--data k=v` strings into values: `12.00 eur` -> Money for money variables, ISO dates for dates.

    Unknown variable names are refused (a typo would otherwise render as empty text).
    """
    spec = template_spec(key)
    kinds = {v.name: v.kind for v in spec.variables}
    values: dict[str, Any] = {}
    for name, text in raw.items():
        kind = kinds.get(name)
        if kind is None:
            raise ValidationError(
                f"Template {key} has no variable {name!r}; its variables: {', '.join(spec.variable_names)}."
            )
        if kind == "money":
            match = _MONEY_TEXT.match(text)
            if match:
                number, currency = match["num"], (match["cur"] or "usd").lower()
                whole, _, frac = number.partition(".")
                values[name] = Money(int(whole) * 100 + int((frac or "0").ljust(2, "0")), currency)
                continue
        if kind == "date":
            parsed = _parse_iso(text)
            if parsed is not None:
                values[name] = parsed
                continue
        values[name] = text
    return values


def validate_override(
    renderer: EmailRenderer, key: str, subject: str, html: str, text: str, app_url: str = ""
) -> RenderedEmail:
    """Compile and render an override with sample data; ValidationError (with a line number) if it fails."""
    template_spec(key)
    override = TemplateOverride(key, subject, html, text)
    for part in PARTS:
        renderer.compile(part, getattr(override, part))
    try:
        rendered = renderer.render(key, sample_data(key, app_url), override)
    except ValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - any render failure means the override is unusable
        raise ValidationError(f"The override for {key} does not render: {exc}.") from None
    if not rendered.subject:
        raise ValidationError(f"The override for {key} renders an empty subject.")
    return rendered


def save_template_override(
    container_or_uow: Any,
    key: str,
    subject: str | None,
    html: str | None,
    text: str | None,
    by: str | None = None,
    audited: bool = False,
) -> TemplateOverride:
    """Store (insert or replace) the override of `key`; parts left None keep the file template's source.

    The override is validated first (syntax error -> ValidationError with the line number). Given a
    container it opens and commits its own unit of work; given a unit of work, the caller commits.
    With `audited` (the CLI) the operator (`by` or CODEX_OPERATOR_EMAIL) must be a platform owner and
    the change is recorded in the audit log.
    """
    template_spec(key)
    sources = {
        "subject": subject if subject is not None else file_source(key, "subject"),
        "html": html if html is not None else file_source(key, "html"),
        "text": text if text is not None else file_source(key, "text"),
    }
    settings = getattr(container_or_uow, "settings", None)
    app_url = getattr(settings, "app_url", "")
    validate_override(
        EmailRenderer(app_url), key, sources["subject"], sources["html"], sources["text"], app_url
    )

    if hasattr(container_or_uow, "uow"):  # a container: our own transaction
        with container_or_uow.uow() as uow:
            result = _upsert_override(uow.session, settings, key, sources, by, audited)
            uow.commit()
        return result
    # A unit of work the caller has entered (or a plain session): the caller commits.
    session = getattr(container_or_uow, "session", container_or_uow)
    return _upsert_override(session, settings, key, sources, by, audited)


def _upsert_override(
    session: Any, settings: Any, key: str, sources: dict[str, str], by: str | None, audited: bool
) -> TemplateOverride:
    from sqlalchemy import func
    from sqlalchemy.dialects.postgresql import insert

    from services.core.models import EmailTemplate

    operator = _operator(session, settings, by) if audited else None
    values = {
        "subject": sources["subject"],
        "html_body": sources["html"],
        "text_body": sources["text"],
        "updated_by": operator.id if operator is not None else None,
    }
    # One statement, so two operators saving the same new key at once cannot collide on the unique key.
    statement = (
        insert(EmailTemplate)
        .values(key=key, **values)
        .on_conflict_do_update(index_elements=[EmailTemplate.key], set_={**values, "updated_at": func.now()})
        .returning(EmailTemplate.updated_at)
    )
    updated_at = session.execute(statement).scalar_one()
    if operator is not None:
        from services.core.audit import record_audit

        record_audit(session, operator, "email.override.save", "email_template", key)
    session.flush()
    return TemplateOverride(key, sources["subject"], sources["html"], sources["text"], updated_at)


def _operator(session: Any, settings: Any, by: str | None) -> Any:
    from services.core.lookup import resolve_operator

    return resolve_operator(session, settings.operator_email(by) if settings is not None else by)


def delete_template_override(
    container: Container, key: str, by: str | None = None, dry_run: bool = False
) -> bool:
    """Remove the override of `key` (audited) so the file template applies again; NotFound if none.

    Returns False on a dry run (nothing removed), True when the row was deleted.
    """
    from sqlalchemy import select

    from services.core.models import EmailTemplate

    template_spec(key)
    with container.uow() as uow:
        session = uow.session
        row = session.scalars(select(EmailTemplate).where(EmailTemplate.key == key).with_for_update()).first()
        if row is None:
            raise NotFound(f"Template {key} has no override; it already uses the file template.")
        operator = _operator(session, container.settings, by)
        if dry_run:
            return False
        from services.core.audit import record_audit

        record_audit(session, operator, "email.override.delete", "email_template", key)
        session.delete(row)
        uow.commit()
    return True
