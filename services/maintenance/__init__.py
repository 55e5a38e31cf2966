"""Upkeep for cron and operators: `codex cleanup` (orphans, sessions) and `codex doctor`."""
