"""Settings from the environment and a `.env` in the working directory; nothing is required."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
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

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None) -> Settings:
        """Read settings: real environment first, then `.env` in the working directory, then defaults."""
        env: dict[str, str] = {}
        path = dotenv_path if dotenv_path is not None else Path.cwd() / ".env"
        if path.is_file():
            from dotenv import dotenv_values

            env.update({k: v for k, v in dotenv_values(path).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper(), "").strip()
            if raw:
                values[f.name] = raw
        home = values.pop("codex_home", None)
        return cls(codex_home=Path(str(home)).expanduser() if home else _default_home(), **values)  # type: ignore[arg-type]

    def operator_email(self, by: str | None = None) -> str | None:
        """Who runs an audited operator action: `--by` if given, else CODEX_OPERATOR_EMAIL (None if neither).

        The one place this choice is made; `services.core.lookup.resolve_operator` checks the user."""
        return by or self.codex_operator_email or None

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
            elif f.name == "database_url":
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
