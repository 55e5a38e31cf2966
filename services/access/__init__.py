"""Who may watch what (`codex access`) and the users view (`codex users`)."""
