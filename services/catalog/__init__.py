"""The catalog: content (`codex content`) and seeding (`codex seed`)."""
