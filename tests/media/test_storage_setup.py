"""`codex storage setup` against moto: buckets created, CORS and lifecycle rules read back, twice."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from tests.fixtures.s3 import _drop_bucket


@pytest.fixture
def fresh(s3_settings, s3_client):  # type: ignore[no-untyped-def]
    """Settings naming two buckets that do not exist yet (dropped after the test)."""
    media, assets = f"setup-media-{os.getpid()}", f"setup-assets-{os.getpid()}"
    yield replace(
        s3_settings, r2_media_bucket=media, r2_assets_bucket=assets, app_url="https://app.example.com/x"
    )
    for bucket in (media, assets):
        _drop_bucket(s3_client, bucket)


def test_setup_creates_buckets_and_rules_and_a_second_run_changes_nothing(cli, fresh, s3_client) -> None:  # type: ignore[no-untyped-def]
    run = cli.with_settings(**fresh.__dict__)
    dry = run("storage", "setup", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would create the bucket" in dry.stdout and "Dry run: nothing was changed." in dry.stdout
    names = {b["Name"] for b in s3_client.list_buckets()["Buckets"]}
    assert fresh.r2_media_bucket not in names

    first = run("storage", "setup")
    assert first.exit_code == 0, first.output
    assert first.stdout.count("created the bucket, added the CORS rule for https://app.example.com") == 2
    for bucket in (fresh.r2_media_bucket, fresh.r2_assets_bucket):
        (cors,) = s3_client.get_bucket_cors(Bucket=bucket)["CORSRules"]
        assert sorted(cors["AllowedMethods"]) == ["GET", "HEAD", "PUT"]
        assert cors["AllowedOrigins"] == ["https://app.example.com"]
        assert "Content-Type" in cors["AllowedHeaders"]
        (rule,) = s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
        assert rule["Status"] == "Enabled"

    second = run("storage", "setup", "--json")
    assert second.exit_code == 0, second.output
    doc = json.loads(second.stdout)
    assert [(b["bucket_action"], b["cors_action"], b["lifecycle_action"]) for b in doc["buckets"]] == [
        ("unchanged", "unchanged", "unchanged")
    ] * 2


def test_setup_replaces_its_own_rules_and_keeps_the_others(cli, s3_settings, s3_client) -> None:  # type: ignore[no-untyped-def]
    bucket = s3_settings.r2_media_bucket
    s3_client.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {"ID": "theirs", "AllowedMethods": ["GET"], "AllowedOrigins": ["https://cdn.example.com"]},
                {
                    "ID": "codex-browser-access",
                    "AllowedMethods": ["GET"],
                    "AllowedOrigins": ["https://old.example"],
                },
            ]
        },
    )
    s3_client.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "expire-tmp",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "tmp/"},
                    "Expiration": {"Days": 1},
                }
            ]
        },
    )
    settings = replace(s3_settings, r2_assets_bucket=bucket, app_url="http://localhost:5173")
    result = cli.with_settings(**settings.__dict__)("storage", "setup")
    assert result.exit_code == 0, result.output
    assert "replaced the CORS rule" in result.stdout and "added the lifecycle rule" in result.stdout

    rules = {r["ID"]: r for r in s3_client.get_bucket_cors(Bucket=bucket)["CORSRules"]}
    assert set(rules) == {"theirs", "codex-browser-access"}
    assert rules["codex-browser-access"]["AllowedOrigins"] == ["http://localhost:5173"]
    life = {r["ID"]: r for r in s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(life) == {"expire-tmp", "codex-abort-incomplete-uploads"}


def test_upload_to_a_missing_bucket_points_to_setup_and_doctor_too(
    cli, s3_settings, session, make_file
) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import make_org

    make_org(session, slug="acme")
    session.commit()
    run = cli.with_settings(**replace(s3_settings, r2_media_bucket="no-such-bucket-here").__dict__)
    result = run("media", "upload", str(make_file("a.mp4")), "--org", "acme")
    assert result.exit_code == 1
    assert "does not exist" in result.stderr and "`codex storage setup` creates it" in result.stderr
    assert "could not be removed" not in result.stderr
    assert result.stderr.strip().endswith("0 of 1 file(s) uploaded, 1 failed.")
    doctor = run("doctor")
    assert "`codex storage setup` creates it" in doctor.stdout
