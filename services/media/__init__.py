"""The media library (`codex media`): file checks, uploads, the presigned flow, status and listings."""
