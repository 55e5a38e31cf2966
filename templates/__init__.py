"""Jinja2 templates shipped with the package (email/: one folder per email, plus the shared layout)."""
