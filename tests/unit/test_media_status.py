"""The media status rules that operators (mark-ready/mark-failed) and the job queue both follow."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from services.core import errors
from services.core.models import MediaStatus
from services.media.status import MEDIA_STATUSES, TRANSITIONS, can_move, check_status, move

# What really happens, and who does it.
ALLOWED = {
    ("uploaded", "transcoding"),  # a worker claims the job
    ("uploaded", "ready"),  # mark-ready without processing
    ("uploaded", "failed"),  # mark-failed; the queue gives up
    ("transcoding", "ready"),  # processing finished; mark-ready
    ("transcoding", "failed"),  # processing failed; mark-failed
    ("transcoding", "uploaded"),  # a stopping worker gives the job back
    ("ready", "failed"),  # mark-failed
    ("failed", "transcoding"),  # processed again after a failure
}


def _item(status: str) -> SimpleNamespace:
    return SimpleNamespace(id=uuid.uuid4(), status=MediaStatus(status))


def test_the_rules_name_every_status_of_the_database_enum() -> None:
    assert set(MEDIA_STATUSES) == set(TRANSITIONS) == {s.value for s in MediaStatus}


@pytest.mark.parametrize("current", MEDIA_STATUSES)
@pytest.mark.parametrize("target", MEDIA_STATUSES)
def test_a_move_is_allowed_exactly_when_the_platform_makes_it(current: str, target: str) -> None:
    expected = current == target or (current, target) in ALLOWED
    assert can_move(current, target) is expected
    assert can_move(MediaStatus(current), MediaStatus(target)) is expected
    item = _item(current)
    if current == target:
        assert move(item, target) is False  # type: ignore[arg-type]
    elif expected:
        assert move(item, target) is True  # type: ignore[arg-type]
        assert item.status == MediaStatus(target)
    else:
        with pytest.raises(errors.Conflict, match=f"is {current}; it cannot become {target}"):
            move(item, target)  # type: ignore[arg-type]
        assert item.status == MediaStatus(current)  # unchanged


def test_a_failed_item_is_retried_by_processing_not_marked_ready() -> None:
    assert can_move("failed", "transcoding") and not can_move("failed", "ready")
    assert not can_move("ready", "transcoding")  # a forced re-run keeps a ready item ready


def test_an_unknown_status_is_refused_with_the_ones_there_are() -> None:
    with pytest.raises(errors.ValidationError, match="one of uploaded, transcoding, ready, failed"):
        check_status("done")
    with pytest.raises(errors.ValidationError):
        move(_item("uploaded"), "done")  # type: ignore[arg-type]
