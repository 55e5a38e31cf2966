"""Masking helpers so that emails, URLs and secrets never leave in full."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit


def mask_email(email: str | None) -> str:
    """`jane@example.com` -> `j***@example.com`."""
    if not email:
        return ""
    local, sep, domain = email.partition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


# A secret shorter than this is shown as stars only: its last 4 characters would be too much of it.
SHOW_TAIL_FROM = 20


def mask_secret(value: str | None) -> str:
    """Show at most the last 4 characters of a long key (`****…4242`); a short one not at all."""
    if not value:
        return ""
    if len(value) < SHOW_TAIL_FROM:
        return "****"
    return f"****…{value[-4:]}"


# `password=...` in a libpq keyword string or a URL query (a quoted value may hold spaces).
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)


def mask_url(url: str | None) -> str:
    """Hide the password of a connection string in every form: `postgresql://user:***@host/db`, a
    `?password=***` query parameter, a libpq keyword string (`host=h password=***`); a URL that cannot
    be parsed is not shown at all."""
    if not url:
        return ""
    if "://" not in url:
        return _KEYWORD_PASSWORD.sub(r"\1***", url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable url>"
    if password is not None:
        netloc = parts.netloc.rsplit("@", 1)
        url = urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc[-1]}"))
    return _KEYWORD_PASSWORD.sub(r"\1***", url)


def url_target(url: str) -> str:
    """Where a database URL points, for error messages: host:port/db or the socket dir."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        from urllib.parse import parse_qs

        host = parse_qs(parts.query).get("host", ["localhost"])[0]
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"
