"""Bad configuration and input named in one sentence (exit 2, or 1 when a server cannot be reached),
and `codex config` never showing a password or a short key. None of these reach a database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codex_cli.app import app

NEVER = "postgresql://nobody:pw@127.0.0.1:1/never"  # nothing listens: a test that connects fails


def run(*args: str, **env: str):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, list(args), env={"DATABASE_URL": NEVER, **env})
    assert "Unexpected error" not in result.output and "Traceback" not in result.output, result.output
    return result


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://u:s3cret@[::1", "DATABASE_URL <unparseable url> is malformed: Invalid IPv6 URL."),
        ("mysql://u:s3cret@db.example.com/app", "DATABASE_URL uses 'mysql'; codex needs PostgreSQL"),
        ("host=db.example.com password=s3cret dbname=app", "libpq keyword strings"),
        ("postgresql://u:s3cret@db.example.com:99999/app", "Port out of range 0-65535"),
        ("postgresql:///app", "names no host"),
    ],
)
def test_a_malformed_database_url_is_one_sentence_without_the_password(url: str, message: str) -> None:
    result = run("purchases", "list", DATABASE_URL=url)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "s3cret" not in result.output


def test_an_unresolvable_database_host_says_it_cannot_connect() -> None:
    result = run("users", "list", DATABASE_URL="postgresql://u:s3cret@no-such-host.invalid/app")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: Cannot connect to the database at no-such-host.invalid/app")
    assert "s3cret" not in result.output


def test_a_dotenv_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"APP_URL=https://caf\xe9.example\n")
    for args in (("config",), ("users", "list")):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert (
            f"{tmp_path / '.env'} is not valid UTF-8 (byte 20); fix or remove that .env file."
            in result.stderr
        )


def test_huge_durations_are_a_sentence() -> None:
    result = run("purchases", "list", "--since", "99999999999d")
    assert result.exit_code == 2
    assert "Duration '99999999999d' is too long: at most 36500d (100 years)." in result.stderr
    assert run("cleanup", "orphans", "--older-than", "9" * 40 + "s").exit_code == 2


def test_a_binary_category_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cats.yaml").write_bytes(b"\x00\x01\xff\xfe\x89PNG")
    result = run("seed", "categories", "--file", "cats.yaml")
    assert result.exit_code == 2
    assert "cats.yaml is not a text file (not valid UTF-8 at byte 3)" in result.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:hunter22@db.example.com/codex", "postgresql://app:***@db.example.com/codex"),
        ("postgres://app@db.example.com/codex?password=hunter22&sslmode=require",
         "postgres://app@db.example.com/codex?password=***&sslmode=require"),
        ("host=db.example.com user=app password=hunter22 dbname=codex",
         "host=db.example.com user=app password=*** dbname=codex"),
        ("host=db.example.com password='hunter 22' dbname=codex",
         "host=db.example.com password=*** dbname=codex"),
        ("postgres://u:hunter22@[::1", "<unparseable url>"),
    ],
)  # fmt: skip
def test_config_masks_the_database_password_in_every_form(url: str, shown: str) -> None:
    result = run("config", "--json", DATABASE_URL=url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["DATABASE_URL"]["value"] == shown
    assert "hunter" not in result.stdout


def test_config_shows_the_last_4_characters_only_of_long_secrets() -> None:
    result = run(
        "config", "--json", RESEND_API_KEY="re_123456789", STRIPE_SECRET_KEY="sk_test_51Abcdefghijklmnop4242"
    )
    values = {k: v["value"] for k, v in json.loads(result.stdout)["settings"].items()}
    assert values["RESEND_API_KEY"] == "****"
    assert values["STRIPE_SECRET_KEY"] == "****…4242"
    assert "re_1" not in result.stdout and "sk_test" not in result.stdout
