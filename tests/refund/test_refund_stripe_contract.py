"""`codex refund` against a stand-in that refuses what Stripe refuses and fails the way Stripe fails."""

from __future__ import annotations

import socket

from sqlalchemy import select

from services.core import models as m
from tests.refund.conftest import REASON


def test_a_long_reason_stays_whole_here_and_at_most_500_characters_go_to_stripe(refund_cli, world) -> None:
    purchase = world.paid_purchase()
    reason = "Customer explained at length: " + "the playback stalls every minute. " * 30

    result = refund_cli("refund", str(purchase.id), "--reason", reason, "--yes")

    assert result.exit_code == 0, result.output
    [post] = world.standin.logged("POST", "/v1/refunds")
    sent = post.params["metadata"]["internalReason"]
    assert post.status == 200 and len(sent) == 500 and reason.strip().startswith(sent[:-1])
    row = world.reload(purchase)
    assert row.refund_reason == reason.strip() and row.refunded_at is not None
    audit = world.session.scalars(select(m.AuditLog).where(m.AuditLog.action == "purchase.refund")).one()
    assert audit.details["reason"] == reason.strip()


def test_a_refund_stripe_made_but_answered_500_says_so_and_a_rerun_records_it(refund_cli, world) -> None:
    purchase = world.paid_purchase()
    world.standin.fail_next(count=50, status=500, method="POST", path="/v1/refunds", after_effect=True)

    result = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes")

    assert result.exit_code == 1
    assert "Nothing was recorded" not in result.output
    assert "may have" in result.output and "again is safe" in result.output
    [made] = world.standin.refunds()  # Stripe did refund
    assert world.reload(purchase).refunded_at is None

    world.standin.clear_faults()
    again = refund_cli("refund", str(purchase.id), "--reason", REASON, "--yes")

    assert again.exit_code == 0, again.output
    assert [r["id"] for r in world.standin.refunds()] == [made["id"]]  # not refunded twice
    assert world.reload(purchase).stripe_refund_id == made["id"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_stripe_unreachable_is_one_sentence_naming_the_operation(refund_cli, world) -> None:
    purchase = world.paid_purchase()
    base = f"http://127.0.0.1:{_closed_port()}"

    result = refund_cli.with_settings(stripe_api_base=base)(
        "refund", str(purchase.id), "--reason", REASON, "--yes"
    )

    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Stripe is unreachable" in lines[0] and "creating a refund" in lines[0]
    assert "nothing was refunded" in lines[0].lower()
    assert "support@stripe.com" not in result.output and "Traceback" not in result.output
    assert world.reload(purchase).refunded_at is None
