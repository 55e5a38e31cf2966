"""Object storage: `S3ObjectStore` (boto3; R2, S3, MinIO, moto) and `LocalObjectStore` (a directory).

Only this module imports boto3's botocore. Both stores offer the same operations: put a file
(multipart with parallel parts above a threshold), head, presigned PUT/GET URLs, delete, batch
delete, paginated listing by prefix, and listing/aborting incomplete multipart uploads.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
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
    ) -> None: ...
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
_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}


def _send_body_in_one_piece(request: Any, **_: Any) -> None:
    """Hand urllib3 the part as bytes rather than the BytesIO botocore wrapped it in.

    botocore turns a bytes body into a BytesIO (to hash it for the signature); urllib3 then sends a
    file-like body 16 KiB at a time through Python-level calls - 65,536 send() calls per GiB, a
    good share of the client's CPU on a machine it shares with the server. As bytes it goes out in
    one sendall(). Retries still work: a bytes body is simply sent again. Returns None, as a
    before-send handler must (a value would replace the HTTP response).
    """
    body = request.body
    if hasattr(body, "getvalue"):
        request.body = body.getvalue()  # an unmodified BytesIO shares its buffer: no copy


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
    ) -> None:
        import botocore.session
        from botocore.config import Config

        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.request_count = 0
        self._count_lock = threading.Lock()
        config = Config(
            region_name="auto",
            signature_version="s3v4",
            # R2 rejects the CRC checksums that boto3 >= 1.36 adds to every upload by default
            # ("when_supported"); only send/validate checksums when an operation requires one.
            # Integrity still holds: without a checksum header botocore signs the payload's SHA-256,
            # which R2 verifies, and we compare size and our SHA-256 metadata after the upload.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
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
            self._client.meta.events.register(f"before-send.s3.{operation}", _send_body_in_one_piece)

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
                return ExternalServiceError(f"Bucket {self.bucket!r} does not exist at {where}.")
            if code in _DENIED or status == 403:
                return ExternalServiceError(
                    f"The object store at {where} refused the credentials for {what} "
                    "(check R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY)."
                )
            message = exc.response.get("Error", {}).get("Message") or code or "error"
            return ExternalServiceError(f"Object store failed to {what}: {code} ({message}).")
        if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError):
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
    ) -> None:
        """Upload `path` to `key`; multipart with `concurrency` parallel parts above the threshold.

        On any failure (or KeyboardInterrupt, or `cancel` being set) a started multipart upload is
        aborted before the error propagates, so no parts are left behind.
        """
        _check_key(key)
        size = os.path.getsize(path)
        if size < self.multipart_threshold:
            if cancel is not None and cancel.is_set():
                raise UploadCancelled(key)
            with open(path, "rb") as fh:
                body = fh.read()
            if len(body) != size:
                raise ExternalServiceError(f"{path} changed while it was being uploaded.")
            self._call(
                "upload",
                key,
                self._client.put_object,
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                Metadata=metadata,
            )
            if on_progress:
                on_progress(size)
            return
        self._put_multipart(
            key, path, size, content_type, metadata, on_progress, part_size, concurrency, cancel
        )

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
    ) -> None:
        part_size = choose_part_size(size, part_size or self.part_size)
        created = self._call(
            "start the upload of",
            key,
            self._client.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            ContentType=content_type,
            Metadata=metadata,
        )
        upload_id = created["UploadId"]
        stop = threading.Event()
        fd = os.open(path, os.O_RDONLY)
        pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="codex-part")

        def upload_part(number: int, offset: int, length: int) -> dict[str, Any]:
            if stop.is_set() or (cancel is not None and cancel.is_set()):
                raise UploadCancelled(key)
            body = os.pread(fd, length, offset)
            if len(body) != length:
                raise ExternalServiceError(f"{path} changed while it was being uploaded.")
            response = self._call(
                "upload a part of",
                key,
                self._client.upload_part,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
            )
            if on_progress:
                on_progress(length)
            return {"PartNumber": number, "ETag": response["ETag"]}

        try:
            futures: list[Future[dict[str, Any]]] = []
            for number, offset in enumerate(range(0, size, part_size), start=1):
                futures.append(pool.submit(upload_part, number, offset, min(part_size, size - offset)))
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                if future in done and future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
            parts = [f.result() for f in futures]
            self._call(
                "finish the upload of",
                key,
                self._client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            # The original error matters more; `codex cleanup` finds any upload left behind.
            with contextlib.suppress(ExternalServiceError):
                self.abort_multipart_upload(key, upload_id)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            os.close(fd)

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

    def check(self) -> str:
        """For `codex doctor`: the bucket exists and the credentials work."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND or code in _NO_BUCKET:
                raise ExternalServiceError(
                    f"Bucket {self.bucket!r} does not exist at {self._endpoint_shown()}."
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
    ) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".upload-", suffix=".part")
        except OSError as exc:
            raise ExternalServiceError(
                f"Cannot write to the local object store {self.root}: {exc.strerror}."
            ) from None
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                while chunk := src.read(_COPY_CHUNK):
                    if cancel is not None and cancel.is_set():
                        raise UploadCancelled(key)
                    out.write(chunk)
                    if on_progress:
                        on_progress(len(chunk))
            self._write_meta(key, content_type, metadata)
            os.replace(tmp, target)
            self.request_count += 1
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

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
