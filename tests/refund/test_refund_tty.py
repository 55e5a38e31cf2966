"""On a terminal `codex refund` shows the refund and asks first: a real pseudo-terminal, a real process."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from dataclasses import replace

import pytest

from tests.conftest import CODEX_ENV, settings_env
from tests.refund.conftest import OPERATOR, REASON

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")


class Terminal:
    """`codex` running on a pseudo-terminal: read what it prints, type an answer."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codex_cli", *args], stdin=slave, stdout=slave, stderr=slave, env=env
        )
        os.close(slave)
        self.seen = ""

    def read_until(self, text: str, limit_s: float = 60) -> str:
        while text not in self.seen:
            ready, _, _ = select.select([self.master], [], [], limit_s)
            if not ready:
                raise AssertionError(f"{text!r} never appeared; the terminal shows:\n{self.seen}")
            try:
                chunk = os.read(self.master, 4096).decode(errors="replace")
            except OSError:  # the process ended and closed the terminal
                raise AssertionError(f"{text!r} never appeared; the terminal shows:\n{self.seen}") from None
            self.seen += chunk
        return self.seen

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def finish(self) -> tuple[int, str]:
        code = self.proc.wait(timeout=60)
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk.decode(errors="replace")
        os.close(self.master)
        return code, self.seen


def _env(stripe_settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k not in CODEX_ENV}
    configured = settings_env(replace(stripe_settings, codex_operator_email=OPERATOR))
    env.update({k: v for k, v in configured.items() if v is not None})
    return env


def test_terminal_confirmation_shows_the_refund_and_no_keeps_everything(world, stripe_settings) -> None:
    purchase = world.paid_purchase(days_ago=3)
    term = Terminal(["refund", str(purchase.id), "--reason", REASON], _env(stripe_settings))
    screen = term.read_until("[y/N]")
    assert "j***@example.com" in screen and "jane.doe@example.com" not in screen
    assert "Intro to Pottery" in screen and "$19.99" in screen
    assert f"{purchase.purchased_at:%Y-%m-%d}" in screen and "(3 days ago)" in screen
    term.type("n")
    code, screen = term.finish()
    assert code == 1 and "Aborted; nothing was changed." in screen
    assert world.reload(purchase).refunded_at is None and world.standin.refunds() == []


def test_terminal_confirmation_yes_refunds(world, stripe_settings) -> None:
    purchase = world.paid_purchase()
    term = Terminal(["refund", str(purchase.id), "--reason", REASON], _env(stripe_settings))
    term.read_until("[y/N]")
    term.type("y")
    code, screen = term.finish()
    assert code == 0, screen
    assert "Refunded $19.99 to j***@example.com" in screen
    [refund] = world.standin.refunds()
    assert world.reload(purchase).stripe_refund_id == refund["id"]
