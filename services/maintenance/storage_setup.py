"""`codex storage setup`: the media and assets buckets, each with our CORS rule and lifecycle rule.

- bucket: created when missing;
- CORS: one rule (ID `codex-browser-access`) allowing PUT/GET/HEAD from APP_URL's origin with the
  headers a presigned browser upload or a player sends, exposing ETag;
- lifecycle: one rule (ID `codex-abort-incomplete-uploads`) aborting incomplete multipart uploads
  7 days after they started (the server's side of what `codex cleanup orphans` does).

Rules with our IDs are replaced when they differ; every other rule on the bucket is kept. Running it
again changes nothing and says so. A dry run reads and reports, and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from services.core.errors import ConfigurationError

if TYPE_CHECKING:
    from services.bootstrap import Container

CORS_RULE_ID = "codex-browser-access"
LIFECYCLE_RULE_ID = "codex-abort-incomplete-uploads"
ABORT_AFTER_DAYS = 7
CORS_METHODS = ["PUT", "GET", "HEAD"]
# What a browser sends beyond the CORS-safelisted headers: Content-Type on a presigned PUT (it is
# signed, and not a "simple" value for video/*), Range when a player seeks.
CORS_HEADERS = ["Content-Type", "Range"]
CORS_EXPOSE = ["ETag"]  # a browser doing a multipart upload reads each part's ETag
CORS_MAX_AGE = 3600


@dataclass
class BucketSetup:
    """What setup found and did on one bucket; each field is "created"/"added"/"updated"/"unchanged"."""

    role: str  # "media" | "assets"
    bucket: str
    where: str
    bucket_action: str = "unchanged"
    cors_action: str = "unchanged"
    lifecycle_action: str = "unchanged"
    other_cors_rules: int = 0
    other_lifecycle_rules: int = 0
    local: bool = False

    @property
    def changed(self) -> bool:
        return any(a != "unchanged" for a in (self.bucket_action, self.cors_action, self.lifecycle_action))


@dataclass
class StorageSetupResult:
    dry_run: bool
    origin: str
    buckets: list[BucketSetup] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(b.changed for b in self.buckets)


def app_origin(app_url: str) -> str:
    parts = urlsplit(app_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"APP_URL {app_url!r} is not an http(s) URL; it gives the CORS origin.")
    return f"{parts.scheme}://{parts.netloc}"


def cors_rule(origin: str) -> dict[str, Any]:
    return {
        "ID": CORS_RULE_ID,
        "AllowedMethods": list(CORS_METHODS),
        "AllowedOrigins": [origin],
        "AllowedHeaders": list(CORS_HEADERS),
        "ExposeHeaders": list(CORS_EXPOSE),
        "MaxAgeSeconds": CORS_MAX_AGE,
    }


def lifecycle_rule() -> dict[str, Any]:
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_AFTER_DAYS},
    }


def _same_cors(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def norm(rule: dict[str, Any]) -> tuple[Any, ...]:
        return (
            sorted(m.upper() for m in rule.get("AllowedMethods", [])),
            sorted(rule.get("AllowedOrigins", [])),
            sorted(h.lower() for h in rule.get("AllowedHeaders", [])),
            sorted(h.lower() for h in rule.get("ExposeHeaders", [])),
            rule.get("MaxAgeSeconds"),
        )

    return norm(a) == norm(b)


def _same_lifecycle(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def norm(rule: dict[str, Any]) -> tuple[Any, ...]:
        prefix = (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", ""))
        days = (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
        extra = sorted(
            k for k in rule if k not in ("ID", "Status", "Filter", "Prefix", "AbortIncompleteMultipartUpload")
        )
        return (rule.get("Status"), prefix or "", days, extra)

    return norm(a) == norm(b)


def _merge(
    existing: list[dict[str, Any]], ours: dict[str, Any], same: Any
) -> tuple[str, list[dict[str, Any]], int]:
    """(action, the rules to write, how many rules of others are kept)."""
    others = [r for r in existing if r.get("ID") != ours["ID"]]
    mine = [r for r in existing if r.get("ID") == ours["ID"]]
    if len(mine) == 1 and same(mine[0], ours):
        return "unchanged", existing, len(others)
    return ("updated" if mine else "added"), [*others, ours], len(others)


def setup_storage(container: Container, *, dry_run: bool = False) -> StorageSetupResult:
    """Create the media and assets buckets when missing and set our CORS and lifecycle rules on each."""
    from services.adapters.storage import build_object_store

    settings = container.settings
    origin = app_origin(settings.app_url)
    result = StorageSetupResult(dry_run=dry_run, origin=origin)
    for role, name in (("media", settings.r2_media_bucket), ("assets", settings.r2_assets_bucket)):
        store: Any = (
            container.object_store if name == settings.r2_media_bucket else build_object_store(settings, name)
        )
        entry = BucketSetup(role=role, bucket=name, where=store.describe())
        result.buckets.append(entry)
        if settings.local_object_store:
            entry.local = True
            if not store.root.is_dir():
                entry.bucket_action = "created"
                if not dry_run:
                    store.check()  # creates the directory
            continue
        exists = store.bucket_exists()
        if not exists:
            entry.bucket_action = "created"
            if not dry_run:
                store.create_bucket()
        cors: list[dict[str, Any]] = store.get_cors_rules() if exists else []
        entry.cors_action, cors_rules, entry.other_cors_rules = _merge(cors, cors_rule(origin), _same_cors)
        life: list[dict[str, Any]] = store.get_lifecycle_rules() if exists else []
        entry.lifecycle_action, life_rules, entry.other_lifecycle_rules = _merge(
            life, lifecycle_rule(), _same_lifecycle
        )
        if dry_run:
            continue
        if entry.cors_action != "unchanged":
            store.put_cors_rules(cors_rules)
        if entry.lifecycle_action != "unchanged":
            store.put_lifecycle_rules(life_rules)
    return result
