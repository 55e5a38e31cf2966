"""Masking helpers so that emails, URLs and secrets never leave in full."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def mask_email(email: str | None) -> str:
    """`jane@example.com` -> `j***@example.com`."""
    if not email:
        return ""
    local, sep, domain = email.partition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_secret(value: str | None) -> str:
    """Show only enough of a key to recognise it: `sk_test_…4242`."""
    if not value:
        return ""
    if len(value) <= 8:
        return "****"
    prefix = value[:8] if value.startswith(("sk_", "rk_", "whsec_", "re_")) else ""
    return f"{prefix}…{value[-4:]}"


def mask_url(url: str | None) -> str:
    """Hide the password of a connection URL: `postgresql://user:***@host/db`."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def url_target(url: str) -> str:
    """Where a database URL points, for error messages: host:port/db or the socket dir."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        from urllib.parse import parse_qs

        host = parse_qs(parts.query).get("host", ["localhost"])[0]
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"
