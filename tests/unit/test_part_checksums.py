"""Which checksum each part of a multipart upload carries, and its value as S3 defines it."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest

from services.adapters.storage import part_checksum, part_checksum_algorithm


@pytest.mark.parametrize(
    ("endpoint", "algorithm"),
    [
        ("https://abc123.r2.cloudflarestorage.com", "CRC32"),  # TLS keeps the body as sent
        ("http://127.0.0.1:7480", "CRC32"),
        ("http://localhost:9000", "CRC32"),
        ("http://[::1]:9000", "CRC32"),
        ("http://10.0.0.5:9000", "SHA256"),  # plain HTTP across a network: the signed SHA-256 binds it
        ("http://minio.internal:9000", "SHA256"),
    ],
)
def test_the_part_checksum_follows_what_protects_the_connection(endpoint: str, algorithm: str) -> None:
    assert part_checksum_algorithm(endpoint) == algorithm


def test_part_checksums_are_base64_of_the_big_endian_crc32_or_the_sha256() -> None:
    body = b"codex" * 100_000
    assert part_checksum("CRC32", body) == base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert part_checksum("SHA256", body) == base64.b64encode(hashlib.sha256(body).digest()).decode()
