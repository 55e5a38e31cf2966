"""Webhook fixtures: the real listener in a thread on port 0 against the test's own database."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests

from services.settings import Settings
from tests.standins.stripe_server import sign_payload

WEBHOOK_SECRET = "whsec_test_webhooks_0123456789"


def make_event(
    type: str, obj: dict[str, Any], event_id: str | None = None, created: int | None = None
) -> dict:
    return {
        "id": event_id or f"evt_test_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": type,
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
        "livemode": False,
    }


class WebhookClient:
    """Posts signed events to a running listener over real HTTP."""

    def __init__(self, url: str, secret: str = WEBHOOK_SECRET) -> None:
        self.url = url
        self.secret = secret

    def post(self, event: dict | bytes, *, timestamp: int | None = None, headers: dict | None = None):  # type: ignore[no-untyped-def]
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        sent = {
            "Stripe-Signature": sign_payload(body, self.secret, timestamp),
            "Content-Type": "application/json",
        }
        sent.update(headers or {})
        return requests.post(self.url + "/webhooks/stripe/payment", data=body, headers=sent, timeout=30)

    def get(self, path: str):  # type: ignore[no-untyped-def]
        return requests.get(self.url + path, timeout=30)


@pytest.fixture
def webhook_settings(settings: Settings) -> Settings:
    return replace(settings, stripe_webhook_secret_payment=WEBHOOK_SECRET)


class RunningListener:
    def __init__(self, settings: Settings, **options: Any) -> None:
        from services.adapters.http_listener import WebhookServer
        from services.bootstrap import Container

        self.container = Container(settings)
        self.server = WebhookServer(("127.0.0.1", 0), self.container, **options)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.client = WebhookClient(self.server.url, settings.stripe_webhook_secret_payment)
        self.stopped = False

    def settle(self) -> None:
        """Wait until the requests already answered have finished their after-answer work (receipts)."""
        for _ in range(1000):
            if self.server.requests_in_flight == 0:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("requests still in flight after 10 s")
        # The receipts are queued with the purchases; `codex webhook listen` runs an outbox drainer
        # thread (#17), this in-test server does not: drain here, where the test waits.
        from services.email.outbox import drain_outbox

        drain_outbox(self.container)

    def stop(self) -> bool:
        if self.stopped:
            return True
        self.stopped = True
        drained = self.server.stop()
        self.thread.join()
        self.container.close()
        return drained


@pytest.fixture
def start_listener(webhook_settings: Settings) -> Iterator[Any]:
    """`start_listener(**options)` -> a RunningListener (stopped after the test)."""
    started: list[RunningListener] = []

    def start(settings: Settings | None = None, **options: Any) -> RunningListener:
        listener = RunningListener(settings or webhook_settings, **options)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()


@pytest.fixture
def listener(start_listener: Any) -> RunningListener:
    return start_listener()


@pytest.fixture
def webhook(listener: RunningListener) -> WebhookClient:
    return listener.client
