"""Local state is private: CODEX_HOME 0700 when codex creates it, never loosened or tightened after;
.eml files 0600; as root the embedded server's data lives outside CODEX_HOME and opens nothing of ours."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.adapters.email_senders import OutboxSender, OutgoingEmail
from tests.fixtures.email import parse_eml


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_0022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _email(message_id: str = "6f1c2a3e-0000-4000-8000-000000000001") -> OutgoingEmail:
    return OutgoingEmail(
        sender="Codex <noreply@codex.local>",
        to="owner@example.com",
        subject="Reset your password",
        html="<a href='x'>reset</a>",
        text="reset: x",
        template="password-reset",
        message_id=message_id,
    )


def test_outbox_under_a_0022_umask_is_private(tmp_path, umask_0022) -> None:
    home = tmp_path / "fresh" / "codex"
    OutboxSender(home / "outbox").send(_email())
    OutboxSender(home / "outbox").send(_email())  # the same message again: one file
    [eml] = (home / "outbox").glob("*.eml")
    assert (_mode(home.parent), _mode(home), _mode(home / "outbox"), _mode(eml)) == (
        0o700,
        0o700,
        0o700,
        0o600,
    )
    assert eml.name == "6f1c2a3e-0000-4000-8000-000000000001.eml"
    assert not [p for p in (home / "outbox").iterdir() if p.name.startswith(".")]  # no temp file left


def test_existing_homes_keep_their_mode(tmp_path, umask_0022) -> None:
    for mode in (0o700, 0o750):
        home = tmp_path / f"home-{mode:o}"
        home.mkdir()
        home.chmod(mode)
        OutboxSender(home / "outbox").send(_email())
        assert _mode(home) == mode  # codex did not create it: neither loosened nor tightened


def test_invite_with_a_reset_link_is_written_0600(cli, settings, umask_0022) -> None:
    result = cli("seed", "owner", "--email", "owner@example.com", "--name", "Olive", "--send-invite")
    assert result.exit_code == 0, result.output
    [eml] = (settings.codex_home / "outbox").glob("*.eml")
    assert _mode(eml) == 0o600 and _mode(settings.codex_home) == 0o700
    assert "reset-password?token=" in parse_eml(eml).text


@pytest.mark.skipif(os.geteuid() != 0, reason="pgserver changes folder modes only when run as root")
def test_embedded_server_as_root_keeps_codex_home_and_its_parents_as_they_were() -> None:
    import tempfile

    from services.adapters.db import ROOT_DATA_BASE, embedded_data_dir, embedded_url, stop_embedded

    # A private folder of our own (like /root), not /tmp/pytest-of-root, whose mode other test runs
    # on this machine change.
    private = Path(tempfile.mkdtemp(prefix="codex-private-"))
    home = private / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    before = {p: _mode(p) for p in [home, *home.parents]}
    pgdata = embedded_data_dir(home)
    try:
        url = embedded_url(home)
        import psycopg

        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert pgdata.parent.parent == ROOT_DATA_BASE and (pgdata / "PG_VERSION").exists()
        assert {p: _mode(p) for p in [home, *home.parents]} == before
        assert not (home / "pgdata").exists()
    finally:
        stop_embedded(home)
        shutil.rmtree(pgdata.parent, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the layout differs only when run as root")
def test_old_data_dir_under_codex_home_is_refused_with_the_move_to_make(tmp_path) -> None:
    from services.adapters.db import embedded_server
    from services.core.errors import ConfigurationError

    home = tmp_path / "home"
    (home / "pgdata").mkdir(parents=True)
    (home / "pgdata" / "PG_VERSION").write_text("16\n")
    with pytest.raises(ConfigurationError, match="mv .*pgdata"):
        embedded_server(home)
