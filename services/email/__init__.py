"""Email (`codex email`): templates, the notification service and the operator entry points."""
