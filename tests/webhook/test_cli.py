"""`codex webhook events|prune|listen` as an operator sees them, and the listener as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from services.core.models import StripeEvent, StripeEventStatus
from tests.conftest import CODEX_ENV
from tests.webhook.conftest import WEBHOOK_SECRET, WebhookClient, make_event

ROOT = Path(__file__).resolve().parents[2]


def add_event(session, status: StripeEventStatus, age: timedelta = timedelta(0), **kw) -> StripeEvent:
    event = make_event(kw.pop("type", "checkout.session.completed"), {"id": "cs_test_1"})
    row = StripeEvent(
        id=event["id"],
        type=event["type"],
        payload=event,
        status=status,
        attempts=kw.pop("attempts", 1),
        received_at=datetime.now(UTC) - age,
        **kw,
    )
    session.add(row)
    session.flush()
    return row


def test_listen_refuses_to_start_without_the_webhook_secret(cli) -> None:
    result = cli("webhook", "listen", "--port", "0")
    assert result.exit_code == 1
    assert "STRIPE_WEBHOOK_SECRET_PAYMENT is not set" in result.stderr


def test_events_lists_stored_events_filtered_by_status_type_and_age(cli, session) -> None:
    failed = add_event(session, StripeEventStatus.failed, error="Purchase not found", attempts=3)
    processed = add_event(session, StripeEventStatus.processed)
    old = add_event(session, StripeEventStatus.ignored, age=timedelta(days=3), type="customer.created")
    session.commit()

    listed = json.loads(cli("webhook", "events", "--json").stdout)
    assert {e["id"] for e in listed} == {failed.id, processed.id, old.id}

    only_failed = json.loads(cli("webhook", "events", "--status", "failed", "--json").stdout)
    assert [(e["id"], e["attempts"], e["error"]) for e in only_failed] == [
        (failed.id, 3, "Purchase not found")
    ]

    by_type = json.loads(cli("webhook", "events", "--type", "customer.created", "--json").stdout)
    assert [e["id"] for e in by_type] == [old.id]

    recent = json.loads(cli("webhook", "events", "--since", "24h", "--json").stdout)
    assert {e["id"] for e in recent} == {failed.id, processed.id}

    text = cli("webhook", "events", "--status", "failed")
    assert text.exit_code == 0 and failed.id in text.stdout and "Purchase not found" in text.stdout


def test_events_rejects_an_unknown_status_and_a_bad_duration(cli) -> None:
    bad_status = cli("webhook", "events", "--status", "weird")
    assert bad_status.exit_code == 2 and "Unknown status 'weird'" in bad_status.stderr
    bad_since = cli("webhook", "events", "--since", "yesterday")
    assert bad_since.exit_code == 2 and "Invalid duration" in bad_since.stderr


def test_events_says_when_nothing_matches(cli) -> None:
    result = cli("webhook", "events")
    assert result.exit_code == 0 and "No stored events match" in result.stdout


def test_prune_deletes_old_done_events_and_keeps_failed_ones(cli, session, container) -> None:
    old_done = add_event(session, StripeEventStatus.processed, age=timedelta(days=120))
    old_ignored = add_event(session, StripeEventStatus.ignored, age=timedelta(days=95))
    old_failed = add_event(session, StripeEventStatus.failed, age=timedelta(days=120))
    recent = add_event(session, StripeEventStatus.processed, age=timedelta(days=10))
    session.commit()

    dry = cli("webhook", "prune", "--older-than", "90d", "--dry-run")
    assert dry.exit_code == 0 and "Would delete 2 event(s)" in dry.stdout and "Kept 1" in dry.stdout

    refused = cli("webhook", "prune", "--older-than", "90d")
    assert refused.exit_code == 2 and "--yes" in refused.stderr

    done = json.loads(cli("webhook", "prune", "--older-than", "90d", "--yes", "--json").stdout)
    assert done["deleted"] == 2 and done["kept_unfinished"] == 1 and done["dry_run"] is False

    remaining = {e["id"] for e in json.loads(cli("webhook", "events", "--json").stdout)}
    assert remaining == {old_failed.id, recent.id}
    assert old_done.id not in remaining and old_ignored.id not in remaining


def test_prune_refuses_to_forget_events_stripe_may_still_send(cli) -> None:
    result = cli("webhook", "prune", "--older-than", "7d", "--yes")
    assert result.exit_code == 2 and "at least 30 days" in result.stderr
    assert "the age must be 30d or more (--older-than)." in result.stderr


def test_prune_with_nothing_old_says_so_without_asking(cli) -> None:
    result = cli("webhook", "prune", "--older-than", "90d")
    assert result.exit_code == 0 and "Deleted 0 event(s)" in result.stdout


def test_replay_of_an_unknown_event_exits_3(cli) -> None:
    result = cli("webhook", "replay", "evt_missing")
    assert result.exit_code == 3 and "evt_missing is not stored" in result.stderr


def _env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CODEX_ENV}
    env.update(
        CODEX_HOME=str(settings.codex_home),
        DATABASE_URL=settings.database_url,
        STRIPE_WEBHOOK_SECRET_PAYMENT=WEBHOOK_SECRET,
        PYTHONUNBUFFERED="1",
    )
    return env


def test_listen_process_serves_then_exits_0_on_sigterm(settings, tmp_path) -> None:
    stderr_path = tmp_path / "listener.log"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "codex_cli", "webhook", "listen", "--port", "0", "--json"],
            cwd=tmp_path,
            env=_env(settings),
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            ready = json.loads(proc.stdout.readline())
            assert ready["webhook_url"].endswith("/webhooks/stripe/payment")
            client = WebhookClient(ready["listening"])
            event = make_event("customer.created", {"id": "cus_1"})
            assert client.post(event).json()["outcome"] == "ignored"
            assert requests.get(ready["listening"] + "/health", timeout=10).status_code == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert json.loads(proc.stdout.read().splitlines()[-1]) == {"stopped": True, "drained": True}
    log = stderr_path.read_text()
    assert event["id"] in log and "customer.created ignored" in log
    assert WEBHOOK_SECRET not in log and "v1=" not in log


def test_listen_process_stops_on_sigint_too(settings, tmp_path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "codex_cli", "webhook", "listen", "--port", "0"],
        cwd=tmp_path,
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("Listening on http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "Stopped." in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_listen_with_two_workers_serves_and_all_exit_0_on_sigterm(settings, tmp_path) -> None:
    stderr_path = tmp_path / "listener.log"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "codex_cli",
                "webhook",
                "listen",
                "--port",
                "0",
                "--workers",
                "2",
                "--json",
            ],
            cwd=tmp_path,
            env=_env(settings),
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            ready = json.loads(proc.stdout.readline())
            client = WebhookClient(ready["listening"])
            events = [make_event("customer.created", {"id": f"cus_{i}"}) for i in range(6)]
            assert [client.post(e).json()["outcome"] for e in events] == ["ignored"] * 6
            assert client.post(events[0]).json()["outcome"] == "duplicate"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert json.loads(proc.stdout.read().splitlines()[-1]) == {"stopped": True, "drained": True}
    try:
        requests.get(ready["listening"] + "/health", timeout=5)
        raise AssertionError("a worker still answers after the listener stopped")
    except requests.ConnectionError:
        pass
