"""Formats shared by the database constraints and the service-layer checks (no heavy imports)."""

from __future__ import annotations

# The users.email CHECK constraint; services refuse an address before it reaches the database.
EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$"
# Organization and category slugs: lower-case letters and digits, single hyphens between.
SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"

# Unicode bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they reorder
# how a title or a name is displayed ("Trojan Source"), so they are refused like control characters.
BIDI_CONTROLS = "\u202a-\u202e\u2066-\u2069"
# Characters refused in one-line text (titles, names, tags): C0 controls, DEL and bidi controls.
ONE_LINE_FORBIDDEN = rf"[\x00-\x1f\x7f{BIDI_CONTROLS}]"
# The same for multi-line text (descriptions): newlines, carriage returns and tabs are allowed.
MULTILINE_FORBIDDEN = rf"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f{BIDI_CONTROLS}]"
