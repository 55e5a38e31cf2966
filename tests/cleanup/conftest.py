"""Helpers for the cleanup tests: a container on moto's S3 server, objects put with a raw client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from services.settings import Settings


@pytest.fixture
def s3_container(s3_settings: Settings) -> Iterator[Any]:
    """A container whose object store is the test's own bucket on moto's S3 server."""
    from services.bootstrap import Container

    c = Container(s3_settings)
    yield c
    c.close()


class Bucket:
    """The test's bucket, seen through a raw boto3 client (independent of the code under test)."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def put(self, key: str, size: int = 10) -> str:
        self.client.put_object(Bucket=self.name, Key=key, Body=b"x" * size)
        return key

    def listed(self) -> set[str]:
        found: set[str] = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name):
            found.update(o["Key"] for o in page.get("Contents", []))
        return found

    def start_multipart(self, key: str) -> str:
        return self.client.create_multipart_upload(Bucket=self.name, Key=key)["UploadId"]

    def uploads(self) -> set[str]:
        found = self.client.list_multipart_uploads(Bucket=self.name).get("Uploads", [])
        return {u["Key"] for u in found}


@pytest.fixture
def bucket(s3_settings: Settings, s3_client: Any) -> Bucket:
    return Bucket(s3_client, s3_settings.r2_media_bucket)


@pytest.fixture
def s3_cli(s3_settings: Settings) -> Any:
    """`codex` run in-process against the test's database and bucket."""
    from tests.conftest import Cli

    return Cli(s3_settings)
