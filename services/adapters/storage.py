"""Object storage: `S3ObjectStore` (boto3; R2, S3, MinIO, moto) and `LocalObjectStore` (a directory).

Only this module imports boto3's botocore. Both stores offer the same operations: put a file
(multipart with parallel parts above a threshold), head, presigned PUT/GET URLs, delete, batch
delete, paginated listing by prefix, and listing/aborting incomplete multipart uploads.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import mimetypes
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from services.core.errors import ConfigurationError, ExternalServiceError, ValidationError

if TYPE_CHECKING:
    from services.settings import Settings

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MiB
DEFAULT_MULTIPART_THRESHOLD = 16 * MiB
DEFAULT_CONCURRENCY = 8
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MiB  # S3 and R2 refuse smaller parts (except the last one)
DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys per request
DEFAULT_EXPIRES = 3600
DEFAULT_STALL_SECONDS = 30.0  # a request that makes no progress this long is retried
MAX_ATTEMPTS = 5
SEND_CHUNK = 1 * MiB  # a request body goes out in slices: "no progress" is then per slice

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class ObjectInfo:
    """What HEAD (or a listing) says about an object. Listings leave content_type/metadata empty."""

    key: str
    size: int
    last_modified: datetime
    content_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MultipartUpload:
    """An incomplete multipart upload still holding parts (and storage) in the bucket."""

    key: str
    upload_id: str
    initiated: datetime


@dataclass
class DeleteResult:
    deleted: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


class UploadCancelled(Exception):
    """Raised inside put_file when the caller's cancel event is set (e.g. Ctrl-C in another thread)."""


class UploadGone(Exception):
    """The multipart upload to resume no longer exists (completed, aborted, or expired)."""


class NoSuchBucket(ExternalServiceError):
    """The bucket does not exist (`codex storage setup` creates it)."""


class FileChanged(ExternalServiceError):
    """The local file changed size while it was being uploaded; what was sent is worthless."""


@dataclass(frozen=True)
class ResumePoint:
    """What it takes to continue a multipart upload: its id and the part size it was started with."""

    upload_id: str
    part_size: int


@dataclass
class PutResult:
    """What `put_file` did: the file's SHA-256 (computed while sending) and the bytes actually sent."""

    sha256: str
    size: int
    sent_bytes: int = 0
    sent_parts: int = 0
    reused_bytes: int = 0
    reused_parts: int = 0
    resumed: bool = False
    upload_id: str | None = None


class ObjectStore(Protocol):
    """What the services need from a bucket; both implementations below provide it."""

    request_count: int

    def put_file(
        self,
        key: str,
        path: Path,
        content_type: str,
        metadata: dict[str, str],
        on_progress: ProgressCallback | None = None,
        part_size: int | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        cancel: threading.Event | None = None,
        *,
        digest_metadata: str | None = None,
        resume: ResumePoint | None = None,
        on_multipart: Callable[[ResumePoint], None] | None = None,
    ) -> PutResult: ...
    def head(self, key: str) -> ObjectInfo | None: ...
    def presign_put(self, key: str, content_type: str, expires: int = DEFAULT_EXPIRES) -> str: ...
    def presign_get(self, key: str, expires: int = DEFAULT_EXPIRES) -> str: ...
    def delete(self, key: str) -> None: ...
    def delete_many(self, keys: Iterable[str]) -> DeleteResult: ...
    def iter_pages(self, prefix: str = "", page_size: int = 1000) -> Iterator[list[ObjectInfo]]: ...
    def iter_multipart_uploads(self, prefix: str = "") -> Iterator[MultipartUpload]: ...
    def abort_multipart_upload(self, key: str, upload_id: str) -> None: ...
    def check(self) -> str: ...
    def describe(self) -> str: ...


def build_object_store(settings: Settings, bucket: str | None = None) -> ObjectStore:
    """The media bucket (or `bucket`): S3/R2 when an endpoint or account is set, else a local directory."""
    bucket = bucket or settings.r2_media_bucket
    if settings.local_object_store:
        return LocalObjectStore(settings.codex_home / "objects" / bucket)
    if not (settings.r2_access_key_id and settings.r2_secret_access_key):
        raise ConfigurationError(
            "R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY must be set when R2_ACCOUNT_ID or R2_ENDPOINT_URL is."
        )
    endpoint = settings.r2_endpoint_url or f"https://{settings.r2_account_id}.r2.cloudflarestorage.com"
    return S3ObjectStore(
        bucket=bucket,
        endpoint_url=endpoint,
        access_key_id=settings.r2_access_key_id,
        secret_access_key=settings.r2_secret_access_key,
        stall_seconds=settings.upload_stall_seconds,
    )


def choose_part_size(size: int, part_size: int) -> int:
    """`part_size`, raised when needed so that the file fits in S3's 10,000 parts."""
    part_size = max(part_size, MIN_PART_SIZE)
    while size > part_size * MAX_PARTS:
        part_size *= 2
    return part_size


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in key.split("/")):
        raise ValidationError(f"Invalid object key {key!r}.")
    return key


# --------------------------------------------------------------------------------------------- S3


_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


def part_checksum_algorithm(endpoint_url: str) -> str:
    """The checksum each part of a multipart upload carries, checked by the server.

    CRC32 (base64 of the big-endian CRC-32, as S3 and R2 define it) where the connection itself
    keeps the body from being altered on the way - HTTPS, as R2 always is, or a loopback address -
    so the checksum only has to catch corruption: computing it costs ~0.02 s per GiB, against ~0.7 s
    for a SHA-256 (and the file's own SHA-256 is computed besides, for the row). Over plain HTTP
    across a network, SHA-256: that signed x-amz-checksum-sha256 header is then the only thing that
    binds the body to the request's signature (payloads are not signed, see `S3ObjectStore`)."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint_url)
    if parts.scheme == "https":
        return "CRC32"
    host = parts.hostname or ""
    if host == "localhost":
        return "CRC32"
    try:
        return "CRC32" if ipaddress.ip_address(host).is_loopback else "SHA256"
    except ValueError:
        return "SHA256"


def part_checksum(algorithm: str, body: bytes) -> str:
    """The value of the x-amz-checksum-<algorithm> header for `body`."""
    if algorithm == "CRC32":
        from zlib_ng.zlib_ng import crc32  # zlib's CRC-32, with SIMD: ~50 GB/s against ~4 GB/s

        return base64.b64encode(crc32(body).to_bytes(4, "big")).decode()
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}


class _Slices(tuple[memoryview, ...]):
    """A request body as memoryview slices: urllib3 sends each with one sendall(); seek() lets
    botocore's retry "rewind" it (the slices are simply sent again)."""

    def seek(self, *_: Any) -> int:
        return 0

    def tell(self) -> int:
        return 0


def _send_body_in_slices(request: Any, **_: Any) -> None:
    """Hand urllib3 the body as 1 MiB memoryview slices rather than the BytesIO botocore wrapped it in.

    botocore turns a bytes body into a BytesIO (to hash it for the signature); urllib3 then sends a
    file-like body 16 KiB at a time through Python-level calls - 65,536 send() calls per GiB, a
    good share of the client's CPU on a machine it shares with the server. Slices of 1 MiB cost 1,024
    calls per GiB, copy nothing, and keep the stall timeout meaningful: while a body is sent the
    socket timeout (botocore's connect_timeout) bounds each sendall() as a whole, so it must cover
    one slice, not a whole part on a slow uplink. Returns None, as a before-send handler must.
    """
    body = request.body
    if hasattr(body, "getvalue"):
        body = body.getvalue()  # an unmodified BytesIO shares its buffer: no copy
    if isinstance(body, bytes | bytearray) and len(body) > SEND_CHUNK:
        view = memoryview(body)
        request.body = _Slices(view[i : i + SEND_CHUNK] for i in range(0, len(view), SEND_CHUNK))
    elif isinstance(body, bytes | bytearray):
        request.body = bytes(body)


class S3ObjectStore:
    """A bucket on R2 (or any S3 API) through boto3; multipart uploads with parallel parts."""

    def __init__(
        self,
        bucket: str,
        endpoint_url: str,
        access_key_id: str,
        secret_access_key: str,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        max_pool_connections: int = 32,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
    ) -> None:
        import botocore.session
        from botocore.config import Config

        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.request_count = 0
        self.stall_seconds = stall_seconds
        self.part_algorithm = part_checksum_algorithm(endpoint_url)
        self._count_lock = threading.Lock()
        config = Config(
            region_name="auto",
            signature_version="s3v4",
            # R2 rejects the CRC checksums that boto3 >= 1.36 adds to every upload by default
            # ("when_supported"); only send/validate checksums when an operation requires one.
            # (botocore sends them as an aws-chunked trailer, which R2 refused). Integrity still holds:
            # uploads pass their own checksum as a plain x-amz-checksum-* header, which R2 accepts and
            # checks: a single PUT its SHA-256, each part a CRC32 over HTTPS (`part_checksum_algorithm`;
            # both are among R2's COMPOSITE multipart checksums), the upload created with that algorithm.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # With that checksum header (signed, being an x-amz-* header) the server already checks
            # every byte; signing the payload too would make botocore hash each body once more.
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            # A stalled request (no byte sent for a slice, or no answer) is retried after this long.
            connect_timeout=stall_seconds,
            read_timeout=stall_seconds,
            max_pool_connections=max_pool_connections,
        )
        # boto3's S3 client is this botocore client; building it straight from botocore skips
        # boto3's import of s3transfer (we upload parts ourselves), ~0.1 s off every command.
        # A session per store: a shared default session is module state and not thread-safe.
        session = botocore.session.get_session()
        self._client = session.create_client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )
        self._client.meta.events.register("before-send.s3", self._count_request)
        for operation in ("PutObject", "UploadPart"):
            self._client.meta.events.register(f"before-send.s3.{operation}", _send_body_in_slices)

    @property
    def client(self) -> Any:
        """The underlying boto3 client (for scripts and tests that need a raw call)."""
        return self._client

    def _count_request(self, **_: Any) -> None:
        with self._count_lock:
            self.request_count += 1

    def describe(self) -> str:
        return f"bucket {self.bucket} at {self._endpoint_shown()}"

    def _endpoint_shown(self) -> str:
        from services.core.masking import mask_url

        return mask_url(self.endpoint_url)

    def _error(self, exc: Exception, action: str, key: str | None = None) -> ExternalServiceError:
        """Translate the botocore errors we expect into one sentence without secrets."""
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        what = f"{action} {key!r}" if key else action
        where = self._endpoint_shown()
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _NO_BUCKET:
                return NoSuchBucket(
                    f"Bucket {self.bucket!r} does not exist at {where}; `codex storage setup` creates it."
                )
            if code in _DENIED or status == 403:
                return ExternalServiceError(
                    f"The object store at {where} refused the credentials for {what} "
                    "(check R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY)."
                )
            message = exc.response.get("Error", {}).get("Message") or code or "error"
            return ExternalServiceError(f"Object store failed to {what}: {code} ({message}).")
        stalled = isinstance(exc, ReadTimeoutError) or (
            isinstance(exc, ConnectionClosedError) and "timed out" in str(exc.kwargs.get("error", ""))
        )
        if stalled:
            return ExternalServiceError(
                f"The object store at {where} stalled while trying to {what}: no progress for "
                f"{self.stall_seconds:g} s, and none after retrying."
            )
        if isinstance(exc, EndpointConnectionError | ConnectionClosedError):
            return ExternalServiceError(f"Cannot reach the object store at {where} to {what}.")
        if isinstance(exc, NoCredentialsError):
            return ExternalServiceError(
                "No object store credentials: set R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY."
            )
        return ExternalServiceError(f"Object store failed to {what} ({type(exc).__name__}).")

    def _call(self, action: str, key: str | None, fn: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, action, key) from None

    # --- upload ---

    def put_file(
        self,
        key: str,
        path: Path,
        content_type: str,
        metadata: dict[str, str],
        on_progress: ProgressCallback | None = None,
        part_size: int | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        cancel: threading.Event | None = None,
        *,
        digest_metadata: str | None = None,
        resume: ResumePoint | None = None,
        on_multipart: Callable[[ResumePoint], None] | None = None,
    ) -> PutResult:
        """Upload `path` to `key`; multipart with `concurrency` parallel parts above the threshold.

        The file's SHA-256 is computed while it is read for sending (no pass before the upload) and
        returned. A single-request upload also stores it as metadata `digest_metadata` (it is known
        before that request starts) and sends it as the request's checksum; every part of a multipart
        upload carries its own checksum header (`part_checksum_algorithm`), which the server checks.

        Without `on_multipart`, any failure (or KeyboardInterrupt, or `cancel`) aborts a started
        multipart upload. With it, the upload is resumable: `on_multipart` is told the upload id as
        soon as it exists, an interruption or an object-store failure keeps the upload and its parts,
        and `resume` continues one - parts already there (ListParts) whose checksum matches the file
        are not sent again; UploadGone when that upload no longer exists.
        """
        _check_key(key)
        size = os.path.getsize(path)
        if size < self.multipart_threshold and resume is None:
            return self._put_single(
                key, path, size, content_type, metadata, on_progress, cancel, digest_metadata
            )
        return self._put_multipart(
            key,
            path,
            size,
            content_type,
            metadata,
            on_progress,
            part_size,
            concurrency,
            cancel,
            resume,
            on_multipart,
        )

    def _put_single(
        self,
        key: str,
        path: Path,
        size: int,
        content_type: str,
        metadata: dict[str, str],
        on_progress: ProgressCallback | None,
        cancel: threading.Event | None,
        digest_metadata: str | None,
    ) -> PutResult:
        if cancel is not None and cancel.is_set():
            raise UploadCancelled(key)
        with open(path, "rb") as fh:
            body = fh.read()
        if len(body) != size:
            raise FileChanged(f"{path} changed while it was being uploaded.")
        digest = hashlib.sha256(body).digest()
        if digest_metadata:
            metadata = {**metadata, digest_metadata: digest.hex()}
        checksum = base64.b64encode(digest).decode()
        response = self._call(
            "upload",
            key,
            self._client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            Metadata=metadata,
            ChecksumSHA256=checksum,
        )
        # A server that checks the checksum header (S3, R2) refuses a body that does not match it, and
        # a 200 to a PUT of Content-Length bytes means it stored them all: no HEAD is needed to verify.
        # One that echoes a different checksum stored something else.
        echoed = response.get("ChecksumSHA256")
        if echoed and echoed != checksum:
            raise ExternalServiceError(
                f"Upload verification failed: the object store's SHA-256 of {key!r} differs from the file's."
            )
        if on_progress:
            on_progress(size)
        return PutResult(sha256=digest.hex(), size=size, sent_bytes=size)

    def _list_parts(self, key: str, upload_id: str) -> tuple[dict[int, dict[str, Any]], str | None] | None:
        """The parts an incomplete upload holds, by number, and the checksum algorithm it was created
        with (if the server says); None when the upload no longer exists."""
        from botocore.exceptions import BotoCoreError, ClientError

        parts: dict[int, dict[str, Any]] = {}
        algorithm: str | None = None
        try:
            for page in self._client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            ):
                algorithm = algorithm or page.get("ChecksumAlgorithm")
                for p in page.get("Parts", []):
                    parts[int(p["PartNumber"])] = p
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("NoSuchUpload", "404"):
                return None
            raise self._error(exc, "list the uploaded parts of", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "list the uploaded parts of", key) from None
        return parts, algorithm

    def _start_multipart(self, key: str, content_type: str, metadata: dict[str, str]) -> str:
        created = self._call(
            "start the upload of",
            key,
            self._client.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            ContentType=content_type,
            Metadata=metadata,
            ChecksumAlgorithm=self.part_algorithm,  # every part then carries it, checked by the server
        )
        return str(created["UploadId"])

    def _put_multipart(
        self,
        key: str,
        path: Path,
        size: int,
        content_type: str,
        metadata: dict[str, str],
        on_progress: ProgressCallback | None,
        part_size: int | None,
        concurrency: int,
        cancel: threading.Event | None,
        resume: ResumePoint | None,
        on_multipart: Callable[[ResumePoint], None] | None,
    ) -> PutResult:
        existing: dict[int, dict[str, Any]] = {}
        point: ResumePoint | None = None
        # A resumed upload keeps the checksum it was created with (its parts must all carry it).
        algorithm = self.part_algorithm
        if resume is not None:
            listed = self._list_parts(key, resume.upload_id)
            if listed is None:
                raise UploadGone(key)
            point, (existing, created_with) = resume, listed
            algorithm = created_with if created_with in ("CRC32", "SHA256") else algorithm
        if point is None:
            chosen = choose_part_size(size, part_size or self.part_size)
            point = ResumePoint(self._start_multipart(key, content_type, metadata), chosen)
            if on_multipart is not None:
                on_multipart(point)
        upload_id, part_size = point.upload_id, point.part_size
        field = f"Checksum{algorithm}"
        resumable = on_multipart is not None
        result = PutResult(sha256="", size=size, resumed=bool(existing), upload_id=upload_id)
        whole = hashlib.sha256()
        stop = threading.Event()
        # At most this many parts are read ahead of the network (bounded memory: ~(workers+2) parts).
        slots = threading.BoundedSemaphore(max(1, concurrency) + 2)
        count_lock = threading.Lock()
        fd = os.open(path, os.O_RDONLY)
        pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="codex-part")

        failures: list[BaseException] = []

        def check() -> None:
            """Stop reading ahead once a part failed or the caller cancelled."""
            if failures:
                raise failures[0]
            if stop.is_set() or (cancel is not None and cancel.is_set()):
                raise UploadCancelled(key)

        def send_part(number: int, body: bytes) -> dict[str, Any]:
            try:
                if stop.is_set() or (cancel is not None and cancel.is_set()):
                    raise UploadCancelled(key)
                checksum = part_checksum(algorithm, body)
                response = self._call(
                    "upload a part of",
                    key,
                    self._client.upload_part,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    **{field: checksum},
                )
                with count_lock:
                    result.sent_bytes += len(body)
                    result.sent_parts += 1
                if on_progress:
                    on_progress(len(body))
                return {"PartNumber": number, "ETag": response["ETag"], field: checksum}
            except BaseException as exc:
                failures.append(exc)
                raise
            finally:
                slots.release()

        def matches(part: dict[str, Any] | None, body: bytes) -> dict[str, Any] | None:
            """The part already uploaded, as CompleteMultipartUpload wants it, if it holds `body`."""
            if part is None or int(part.get("Size", -1)) != len(body):
                return None
            checksum = part_checksum(algorithm, body)
            if part.get(field):
                if part[field] != checksum:
                    return None
            else:  # servers that keep no part checksum: an unencrypted part's ETag is its MD5
                etag = str(part.get("ETag", "")).strip('"')
                if len(etag) == 32 and etag != hashlib.md5(body, usedforsecurity=False).hexdigest():
                    return None
            return {"PartNumber": part["PartNumber"], "ETag": part["ETag"], field: checksum}

        try:
            futures: list[Future[dict[str, Any]] | dict[str, Any]] = []
            for number, offset in enumerate(range(0, size, part_size), start=1):
                length = min(part_size, size - offset)
                while not slots.acquire(timeout=0.5):
                    check()
                try:
                    check()
                    body = os.pread(fd, length, offset)
                    if len(body) != length:
                        raise FileChanged(f"{path} changed while it was being uploaded.")
                except BaseException:
                    slots.release()
                    raise
                whole.update(body)
                kept = matches(existing.get(number), body)
                if kept is not None:
                    slots.release()
                    result.reused_bytes += length
                    result.reused_parts += 1
                    if on_progress:
                        on_progress(length)
                    futures.append(kept)
                else:
                    futures.append(pool.submit(send_part, number, body))
                del body
            pending = [f for f in futures if isinstance(f, Future)]
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                for future in done:
                    if future.exception() is not None:
                        raise future.exception()  # type: ignore[misc]
                pending = [f for f in pending if not f.done()]
                if pending and cancel is not None and cancel.is_set():
                    raise UploadCancelled(key)
            parts = [f.result() if isinstance(f, Future) else f for f in futures]
            if os.fstat(fd).st_size != size:
                raise FileChanged(f"{path} changed while it was being uploaded.")
            self._call(
                "finish the upload of",
                key,
                self._client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException as exc:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            keep = resumable and (
                isinstance(exc, UploadCancelled | KeyboardInterrupt | CancelledError)
                or (isinstance(exc, ExternalServiceError) and not isinstance(exc, FileChanged))
            )
            if not keep:
                # The original error matters more; `codex cleanup` finds any upload left behind.
                with contextlib.suppress(ExternalServiceError):
                    self.abort_multipart_upload(key, upload_id)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            os.close(fd)
        result.sha256 = whole.hexdigest()
        return result

    # --- reads, URLs, deletes ---

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            r = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                return None
            raise self._error(exc, "read", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "read", key) from None
        return ObjectInfo(
            key=key,
            size=int(r["ContentLength"]),
            last_modified=r["LastModified"],
            content_type=r.get("ContentType", ""),
            metadata=dict(r.get("Metadata", {})),
        )

    def presign_put(self, key: str, content_type: str, expires: int = DEFAULT_EXPIRES) -> str:
        """A URL for one HTTP PUT; the client must send the same Content-Type header."""
        _check_key(key)
        return self._call(
            "sign an upload URL for",
            key,
            self._client.generate_presigned_url,
            ClientMethod="put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=expires,
        )

    def presign_get(self, key: str, expires: int = DEFAULT_EXPIRES) -> str:
        return self._call(
            "sign a download URL for",
            key,
            self._client.generate_presigned_url,
            ClientMethod="get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=expires,
        )

    def delete(self, key: str) -> None:
        self._call("delete", key, self._client.delete_object, Bucket=self.bucket, Key=key)

    def delete_many(self, keys: Iterable[str]) -> DeleteResult:
        """Delete in batches of 1,000 keys, one DeleteObjects request each; per-key errors reported."""
        result = DeleteResult()
        batch: list[str] = []

        def flush() -> None:
            if not batch:
                return
            r = self._call(
                "delete objects",
                None,
                self._client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            failed = {
                e["Key"]: f"{e.get('Code', '')} {e.get('Message', '')}".strip() for e in r.get("Errors", [])
            }
            result.errors.extend(failed.items())
            result.deleted.extend(k for k in batch if k not in failed)
            batch.clear()

        for key in keys:
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                flush()
        flush()
        return result

    def iter_pages(self, prefix: str = "", page_size: int = 1000) -> Iterator[list[ObjectInfo]]:
        """Objects under `prefix`, one list per ListObjectsV2 page (streamed, not collected)."""
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
        )
        try:
            for page in pages:
                yield [
                    ObjectInfo(key=o["Key"], size=int(o["Size"]), last_modified=o["LastModified"])
                    for o in page.get("Contents", [])
                ]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list objects") from None

    def iter_multipart_uploads(self, prefix: str = "") -> Iterator[MultipartUpload]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self._client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for u in page.get("Uploads", []):
                    yield MultipartUpload(key=u["Key"], upload_id=u["UploadId"], initiated=u["Initiated"])
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list incomplete uploads") from None

    def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) == "NoSuchUpload":
                return  # already completed or aborted
            raise self._error(exc, "abort the upload of", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "abort the upload of", key) from None

    # --- bucket set-up (`codex storage setup`) ---

    def bucket_exists(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND or code in _NO_BUCKET:
                return False
            raise self._error(exc, "check the bucket") from None
        except BotoCoreError as exc:
            raise self._error(exc, "check the bucket") from None
        return True

    def create_bucket(self) -> None:
        """Without a LocationConstraint first (R2 then uses "auto"; Ceph refuses "auto"), and with the
        client's region when the server insists on one (AWS S3 and moto outside us-east-1)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.create_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) != "IllegalLocationConstraintException":
                raise self._error(exc, "create the bucket", self.bucket) from None
        except BotoCoreError as exc:
            raise self._error(exc, "create the bucket", self.bucket) from None
        self._call(
            "create the bucket",
            self.bucket,
            self._client.create_bucket,
            Bucket=self.bucket,
            CreateBucketConfiguration={"LocationConstraint": self._client.meta.region_name},
        )

    def get_cors_rules(self) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return list(self._client.get_bucket_cors(Bucket=self.bucket).get("CORSRules", []))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) == "NoSuchCORSConfiguration":
                return []
            raise self._error(exc, "read the CORS rules of", self.bucket) from None
        except BotoCoreError as exc:
            raise self._error(exc, "read the CORS rules of", self.bucket) from None

    def put_cors_rules(self, rules: list[dict[str, Any]]) -> None:
        self._call(
            "set the CORS rules of",
            self.bucket,
            self._client.put_bucket_cors,
            Bucket=self.bucket,
            CORSConfiguration={"CORSRules": rules},
        )

    def get_lifecycle_rules(self) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            r = self._client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) == "NoSuchLifecycleConfiguration":
                return []
            raise self._error(exc, "read the lifecycle rules of", self.bucket) from None
        except BotoCoreError as exc:
            raise self._error(exc, "read the lifecycle rules of", self.bucket) from None
        return list(r.get("Rules", []))

    def put_lifecycle_rules(self, rules: list[dict[str, Any]]) -> None:
        self._call(
            "set the lifecycle rules of",
            self.bucket,
            self._client.put_bucket_lifecycle_configuration,
            Bucket=self.bucket,
            LifecycleConfiguration={"Rules": rules},
        )

    def check(self) -> str:
        """For `codex doctor`: the bucket exists and the credentials work."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND or code in _NO_BUCKET:
                raise NoSuchBucket(
                    f"Bucket {self.bucket!r} does not exist at {self._endpoint_shown()}; "
                    "`codex storage setup` creates it."
                ) from None
            raise self._error(exc, "check the bucket") from None
        except BotoCoreError as exc:
            raise self._error(exc, "check the bucket") from None
        return f"bucket {self.bucket} reachable at {self._endpoint_shown()}"


# ------------------------------------------------------------------------------------------ local

_META_DIR = ".codex-meta"
_COPY_CHUNK = 8 * MiB


class LocalObjectStore:
    """A bucket as a directory (the embedded default): `<root>/<key>`, metadata in `<root>/.codex-meta/`.

    last_modified is the file's mtime, so ageing rules work as on S3. There are no multipart uploads:
    files are copied to a temporary name and renamed, so a failed upload leaves nothing behind.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.request_count = 0

    def describe(self) -> str:
        return f"local directory {self.root}"

    def _path(self, key: str) -> Path:
        _check_key(key)
        if key.split("/", 1)[0] == _META_DIR:
            raise ValidationError(f"Invalid object key {key!r}.")
        return self.root / key

    def _meta_path(self, key: str) -> Path:
        return self.root / _META_DIR / f"{key}.json"

    def put_file(
        self,
        key: str,
        path: Path,
        content_type: str,
        metadata: dict[str, str],
        on_progress: ProgressCallback | None = None,
        part_size: int | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        cancel: threading.Event | None = None,
        *,
        digest_metadata: str | None = None,
        resume: ResumePoint | None = None,
        on_multipart: Callable[[ResumePoint], None] | None = None,
    ) -> PutResult:
        """Copy to a temporary name, hashing while copying, then rename (nothing to resume here).

        The digest is only known at the end, which is when the metadata file is written anyway."""
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".upload-", suffix=".part")
        except OSError as exc:
            raise ExternalServiceError(
                f"Cannot write to the local object store {self.root}: {exc.strerror}."
            ) from None
        tmp = Path(tmp_name)
        digest = hashlib.sha256()
        copied = 0
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                while chunk := src.read(_COPY_CHUNK):
                    if cancel is not None and cancel.is_set():
                        raise UploadCancelled(key)
                    digest.update(chunk)
                    out.write(chunk)
                    copied += len(chunk)
                    if on_progress:
                        on_progress(len(chunk))
            if digest_metadata:
                metadata = {**metadata, digest_metadata: digest.hexdigest()}
            self._write_meta(key, content_type, metadata)
            os.replace(tmp, target)
            self.request_count += 1
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return PutResult(sha256=digest.hexdigest(), size=copied, sent_bytes=copied)

    def _write_meta(self, key: str, content_type: str, metadata: dict[str, str]) -> None:
        meta = self._meta_path(key)
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"content_type": content_type, "metadata": metadata}))

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if not path.is_file():
            return None
        content_type, metadata = "", {}
        try:
            saved = json.loads(self._meta_path(key).read_text())
            content_type, metadata = saved.get("content_type", ""), dict(saved.get("metadata", {}))
        except (OSError, ValueError):
            pass
        if not content_type:
            content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return ObjectInfo(
            key=key,
            size=st.st_size,
            last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
            content_type=content_type,
            metadata=metadata,
        )

    def presign_put(self, key: str, content_type: str, expires: int = DEFAULT_EXPIRES) -> str:
        """A file:// URL of where the object goes: copy the file there, then `codex media complete`."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.resolve().as_uri()

    def presign_get(self, key: str, expires: int = DEFAULT_EXPIRES) -> str:
        return self._path(key).resolve().as_uri()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        self._meta_path(key).unlink(missing_ok=True)
        self._prune(self._path(key).parent)

    def _prune(self, directory: Path) -> None:
        """Remove empty parent directories up to the root, as S3 has no directories."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def delete_many(self, keys: Iterable[str]) -> DeleteResult:
        result = DeleteResult()
        for key in keys:
            try:
                self.delete(key)
                result.deleted.append(key)
            except (OSError, ValidationError) as exc:
                result.errors.append((key, str(exc)))
        return result

    def iter_pages(self, prefix: str = "", page_size: int = 1000) -> Iterator[list[ObjectInfo]]:
        """Objects under `prefix` in key order (as S3 lists them), `page_size` per page."""
        page: list[ObjectInfo] = []
        for key, st in self._walk(self.root, ""):
            if not key.startswith(prefix):
                continue
            page.append(
                ObjectInfo(
                    key=key, size=st.st_size, last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC)
                )
            )
            if len(page) >= page_size:
                yield page
                page = []
        if page:
            yield page

    def _walk(self, directory: Path, base: str) -> Iterator[tuple[str, os.stat_result]]:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        # Sort as S3 sorts full keys: a directory's name sorts as if followed by "/".
        entries.sort(key=lambda e: e.name + ("/" if e.is_dir(follow_symlinks=False) else ""))
        for entry in entries:
            if base == "" and entry.name == _META_DIR:
                continue
            if entry.name.startswith(".upload-"):
                continue  # an upload in progress
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), f"{base}{entry.name}/")
            elif entry.is_file(follow_symlinks=False):
                yield f"{base}{entry.name}", entry.stat()

    def iter_multipart_uploads(self, prefix: str = "") -> Iterator[MultipartUpload]:
        return iter(())

    def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        return None

    def check(self) -> str:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExternalServiceError(
                f"Cannot create the local object store {self.root}: {exc.strerror}."
            ) from None
        if not os.access(self.root, os.W_OK):
            raise ExternalServiceError(f"The local object store {self.root} is not writable.")
        usage = shutil.disk_usage(self.root)
        return f"local directory {self.root} ({usage.free // (1024**3)} GiB free)"
