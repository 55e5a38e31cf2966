"""Settings from the environment and a `.env` in the working directory; nothing is required."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path

DEFAULT_APP_URL = "http://localhost:5173"
SECRET_FIELDS = frozenset(
    {
        "r2_secret_access_key",
        "r2_access_key_id",
        "stripe_secret_key",
        "stripe_webhook_secret_payment",
        "resend_api_key",
    }
)


def _default_home() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("codex", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """The effective configuration. Empty strings mean "not set"."""

    codex_home: Path
    database_url: str = ""
    database_url_unpooled: str = ""
    r2_account_id: str = ""
    r2_access_key_id: str = ""
    r2_secret_access_key: str = ""
    r2_endpoint_url: str = ""
    r2_media_bucket: str = "codex-media"
    r2_assets_bucket: str = "codex-assets"
    stripe_secret_key: str = ""
    stripe_webhook_secret_payment: str = ""
    stripe_api_base: str = ""
    resend_api_key: str = ""
    resend_api_url: str = ""
    email_from_address: str = "noreply@codex.local"
    email_from_name: str = "Codex"
    app_url: str = DEFAULT_APP_URL
    codex_operator_email: str = ""
    codex_lock_max_age: str = "1h"
    codex_upload_stall_seconds: str = "30"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None) -> Settings:
        """Read settings: real environment first, then `.env` in the working directory, then defaults."""
        env: dict[str, str] = {}
        path = dotenv_path if dotenv_path is not None else Path.cwd() / ".env"
        if path.is_file():
            from dotenv import dotenv_values

            try:
                values_in_file = dotenv_values(path, encoding="utf-8")
            except UnicodeDecodeError as exc:
                from services.core.errors import ValidationError

                raise ValidationError(
                    f"{path} is not valid UTF-8 (byte {exc.start + 1}); fix or remove that .env file."
                ) from None
            except OSError as exc:
                from services.core.errors import ValidationError

                raise ValidationError(f"Cannot read {path}: {exc.strerror or exc}.") from None
            env.update({k: v for k, v in values_in_file.items() if v is not None})
        env.update(os.environ if environ is None else environ)
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper(), "").strip()
            if raw:
                values[f.name] = raw
        home = values.pop("codex_home", None)
        return cls(codex_home=Path(str(home)).expanduser() if home else _default_home(), **values)  # type: ignore[arg-type]

    def checked_database_url(self) -> str:
        """DATABASE_URL if it is a usable PostgreSQL URL; else a ValidationError naming what is wrong."""
        check_database_url(self.database_url)
        return self.database_url

    def operator_email(self, by: str | None = None) -> str | None:
        """Who runs an audited operator action: `--by` if given, else CODEX_OPERATOR_EMAIL (None if neither).

        The one place this choice is made; `services.core.lookup.resolve_operator` checks the user."""
        return by or self.codex_operator_email or None

    def lock_max_age(self) -> timedelta:
        """CODEX_LOCK_MAX_AGE: how long a cron run may hold its lock before a person should look."""
        from services.core.durations import parse_duration
        from services.core.errors import ConfigurationError, ValidationError

        try:
            return parse_duration(self.codex_lock_max_age)
        except ValidationError as exc:
            raise ConfigurationError(f"CODEX_LOCK_MAX_AGE: {exc}") from None

    @property
    def migration_url(self) -> str:
        """The URL migrations use: DATABASE_URL_UNPOOLED (Neon's direct URL) when set, else DATABASE_URL."""
        return self.database_url_unpooled or self.database_url

    @property
    def upload_stall_seconds(self) -> float:
        """CODEX_UPLOAD_STALL_SECONDS: an object-store request with no progress this long is retried."""
        from services.core.errors import ConfigurationError

        try:
            value = float(self.codex_upload_stall_seconds)
        except ValueError:
            value = 0.0
        if not 0 < value <= 3600:
            raise ConfigurationError(
                "CODEX_UPLOAD_STALL_SECONDS must be a positive number of seconds, at most 3600."
            )
        return value

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @property
    def local_object_store(self) -> bool:
        return not (self.r2_endpoint_url or self.r2_account_id)

    @property
    def outbox_email(self) -> bool:
        return not self.resend_api_key

    def describe(self) -> list[tuple[str, str, str]]:
        """(VARIABLE, shown value, source) rows for `codex config`; secrets masked."""
        from services.core.masking import mask_secret, mask_url

        defaults = Settings(codex_home=self.codex_home)
        rows = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown = str(value)
            if f.name in SECRET_FIELDS:
                shown = mask_secret(shown)
            elif f.name in ("database_url", "database_url_unpooled"):
                shown = mask_url(shown)
            if f.name == "codex_home":
                source = "set" if os.environ.get("CODEX_HOME") else "default"
            elif value == getattr(defaults, f.name):
                source = "default" if value else "unset"
            else:
                source = "set"
            rows.append((f.name.upper(), shown, source))
        return rows

    def embedded_parts(self) -> dict[str, str]:
        """Which parts run on embedded local defaults, and where."""
        parts = {}
        if self.embedded_database:
            from services.adapters.db import embedded_data_dir

            parts["database"] = f"embedded PostgreSQL in {embedded_data_dir(self.codex_home)}"
        if self.local_object_store:
            parts["object store"] = f"local directory {self.codex_home / 'objects'}"
        if self.outbox_email:
            parts["email"] = f"outbox folder {self.codex_home / 'outbox'}"
        if not self.stripe_secret_key:
            parts["payments"] = "not configured (Stripe commands fail until STRIPE_SECRET_KEY is set)"
        return parts


_URL_SCHEMES = ("postgres://", "postgresql://", "postgresql+psycopg://")


def check_database_url(url: str) -> None:
    """Refuse a DATABASE_URL we cannot use with one sentence (the password never appears in it)."""
    from urllib.parse import urlsplit

    from services.core.errors import ValidationError
    from services.core.masking import mask_url

    if not url:
        return
    if any(ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF for ch in url):
        raise ValidationError("DATABASE_URL contains control characters or bytes that are not UTF-8.")
    if "://" not in url:
        raise ValidationError(
            "DATABASE_URL must be a postgresql:// URL (postgresql://USER:PASSWORD@HOST:PORT/DB); "
            "libpq keyword strings like 'host=... dbname=...' are not supported."
        )
    if not url.startswith(_URL_SCHEMES):
        scheme = url.split("://", 1)[0]
        raise ValidationError(
            f"DATABASE_URL uses {scheme!r}; codex needs PostgreSQL: postgresql://USER:PASSWORD@HOST:PORT/DB."
        )
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        reason = str(exc).rstrip(".")
        raise ValidationError(f"DATABASE_URL {mask_url(url)} is malformed: {reason}.") from None
    if not parts.hostname and "host=" not in parts.query:
        raise ValidationError(f"DATABASE_URL {mask_url(url)} names no host.")
