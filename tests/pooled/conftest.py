"""Every test here reaches its database through PgBouncer in transaction mode, as production does
through Neon's pooler (consecutive transactions of one client may run on different server connections)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from services.settings import Settings
from tests.conftest import settings_env


@pytest.fixture
def db_route() -> str:
    return "pgbouncer"


def codex_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for a `codex` subprocess on `settings` (nothing from the developer's own)."""
    env = {k: v for k, v in os.environ.items() if k not in settings_env(settings)}
    env.update({k: v for k, v in settings_env(settings).items() if v is not None})
    env.update(extra)
    return env


def codex(settings: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run `codex ARGS...` as its own process, as cron would."""
    return subprocess.run(
        [sys.executable, "-m", "codex_cli", *args],
        env=codex_env(settings, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


class ListenerProcess:
    """`codex webhook listen --port 0 --json` as a real process; `url` once it is listening."""

    def __init__(self, settings: Settings, *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "codex_cli", "webhook", "listen", "--port", "0", "--json", *options],
            env=codex_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if not first:
            raise AssertionError(f"listener did not start: {self.process.stderr.read()}")  # type: ignore[union-attr]
        self.url: str = json.loads(first)["listening"]

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _out, err = self.process.communicate(timeout=60)
        return self.process.returncode, err


@pytest.fixture
def listener_process(stripe_settings: Settings) -> Iterator[Any]:
    started: list[ListenerProcess] = []

    def start(*options: str) -> ListenerProcess:
        started.append(ListenerProcess(stripe_settings, *options))
        return started[-1]

    yield start
    for listener in started:
        if listener.process.poll() is None:
            listener.process.kill()
            listener.process.wait()
