"""Codex service layer: business rules shared by the CLI and, later, the web app."""
