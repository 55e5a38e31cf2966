"""codex: the operator CLI of the Codex video platform."""

__version__ = "0.1.0"
