"""Formats shared by the database constraints and the service-layer checks (no heavy imports)."""

from __future__ import annotations

# The users.email CHECK constraint; services refuse an address before it reaches the database.
EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$"
# Organization and category slugs: lower-case letters and digits, single hyphens between.
SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
