"""Attachments on S3-compatible object storage (MinIO, Alibaba OSS, Tencent COS, AWS S3).

A small client of our own on httpx: four operations (PutObject, GetObject streamed,
HeadObject, DeleteObject) signed with AWS Signature Version 4, which every one of those
services accepts. No SDK: boto3/aiobotocore would be a large dependency for four requests, and
this way the app's HTTP client, its timeouts and its logging stay the only ones.

Keys are checked with `check_key` exactly as on the local disk, so no user input ever becomes
part of an object name. Neither the secret key nor the Authorization header is ever logged or
put into an exception.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import quote

import anyio.to_thread
import httpx
from pydantic import SecretStr

from app.core.config import AttachmentSettings
from app.services.storage import CHUNK_SIZE, ObjectNotFound, StorageError, StoredObject, check_key

log = logging.getLogger(__name__)

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# Failures worth another attempt: the service says so (500/503 SlowDown), or a pooled
# keep-alive connection the server had already closed. Timeouts are not retried, so a request
# waits at most about one timeout.
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
_ATTEMPTS = 3
_BACKOFF_SECONDS = 0.1
# Hashing a large upload is CPU work: off the event loop above this size.
_HASH_IN_THREAD_ABOVE = 256 * 1024
_ERROR_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")


class S3Error(StorageError):
    """The object storage refused or failed a request (not a missing object)."""

    def __init__(self, operation: str, key: str, *, status: int | None, code: str | None, request_id: str | None):
        self.operation = operation
        self.key = key
        self.status = status
        self.code = code
        self.request_id = request_id
        detail = f"status {status}" if status is not None else "no response"
        super().__init__(
            f"S3 {operation} {key}: {detail}"
            + (f" {code}" if code else "")
            + (f" (request id {request_id})" if request_id else "")
        )


# --- Signature Version 4 ------------------------------------------------------------------------


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """SigV4's encoding: everything but A-Z a-z 0-9 - _ . ~ as %XX of its UTF-8 bytes."""
    return quote(text, safe="/~" if keep_slash else "~")


class SigV4Signer:
    """Signs requests with AWS Signature Version 4 (header-based, `AWS4-HMAC-SHA256`).

    The pieces are public so that tests can compare them with AWS's published examples."""

    def __init__(self, access_key_id: str, secret_access_key: SecretStr, *, region: str, service: str = "s3"):
        self.access_key_id = access_key_id
        self._secret = secret_access_key
        self.region = region
        self.service = service

    def __repr__(self) -> str:
        return f"SigV4Signer(access_key_id={self.access_key_id!r}, region={self.region!r}, service={self.service!r})"

    def scope(self, amz_date: str) -> str:
        return f"{amz_date[:8]}/{self.region}/{self.service}/aws4_request"

    @staticmethod
    def canonical_request(
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        payload_hash: str,
    ) -> tuple[str, str]:
        """(canonical request, signed headers). `path` is the URI-encoded path as sent (S3
        encodes it once); `query` the decoded name/value pairs; `headers` those to sign."""
        canonical_query = "&".join(
            f"{name}={value}"
            for name, value in sorted(
                (uri_encode(name, keep_slash=False), uri_encode(value, keep_slash=False)) for name, value in query
            )
        )
        normalised = sorted((name.lower(), " ".join(value.split())) for name, value in headers.items())
        canonical_headers = "".join(f"{name}:{value}\n" for name, value in normalised)
        signed_headers = ";".join(name for name, _ in normalised)
        request = "\n".join([method, path, canonical_query, canonical_headers, signed_headers, payload_hash])
        return request, signed_headers

    def string_to_sign(self, amz_date: str, canonical_request: str) -> str:
        digest = hashlib.sha256(canonical_request.encode()).hexdigest()
        return f"{ALGORITHM}\n{amz_date}\n{self.scope(amz_date)}\n{digest}"

    def signature(self, amz_date: str, string_to_sign: str) -> str:
        key = ("AWS4" + self._secret.get_secret_value()).encode()
        for part in (amz_date[:8], self.region, self.service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()

    def authorization(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        payload_hash: str,
        *,
        amz_date: str,
    ) -> str:
        """The Authorization header's value; `headers` must include host and x-amz-date."""
        request, signed_headers = self.canonical_request(method, path, query, headers, payload_hash)
        signature = self.signature(amz_date, self.string_to_sign(amz_date, request))
        return (
            f"{ALGORITHM} Credential={self.access_key_id}/{self.scope(amz_date)}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )


def format_amz_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the backend --------------------------------------------------------------------------------


class S3Storage:
    """The `Storage` interface on an S3 bucket, object names `<s3_prefix><key>`.

    Uses the HTTP client it is given (the app's shared one) with its own timeout per request.
    A PUT carries the body's SHA-256 in `x-amz-content-sha256`, which the service verifies, so
    a corrupted upload is refused rather than stored; a PUT replaces the object at once, so a
    reader never sees a partial one."""

    def __init__(
        self,
        settings: AttachmentSettings,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not (
            settings.s3_endpoint_url
            and settings.s3_bucket
            and settings.s3_access_key_id
            and settings.s3_secret_access_key is not None
        ):
            raise ValueError("S3Storage needs s3_endpoint_url, s3_bucket and the access keys")
        self._http = http
        self._clock = clock
        self._timeout = httpx.Timeout(settings.s3_timeout_seconds)
        self._signer = SigV4Signer(settings.s3_access_key_id, settings.s3_secret_access_key, region=settings.s3_region)
        endpoint = httpx.URL(settings.s3_endpoint_url)
        self._scheme = endpoint.scheme
        netloc = endpoint.netloc.decode("ascii")
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        if settings.s3_addressing == "virtual":
            self._host, self._base_path = f"{self.bucket}.{netloc}", "/"
        else:
            self._host, self._base_path = netloc, f"/{self.bucket}/"

    def __repr__(self) -> str:
        return f"S3Storage(host={self._host!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def url_for(self, key: str) -> str:
        """The object's URL (unsigned: the bucket stays private)."""
        return f"{self._scheme}://{self._host}{self._path(key)}"

    def _path(self, key: str) -> str:
        return self._base_path + uri_encode(self.prefix + check_key(key), keep_slash=True)

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if len(data) > _HASH_IN_THREAD_ABOVE:
            digest = await anyio.to_thread.run_sync(_sha256_hex, data)
        else:
            digest = _sha256_hex(data)
        response = await self._send(
            "PUT", key, path, content=data, payload_hash=digest, headers={"content-type": "application/octet-stream"}
        )
        try:
            if response.status_code != 200:
                raise await self._error("PUT", key, response)
        finally:
            await response.aclose()

    async def get(self, key: str) -> bytes:
        stored = await self.open(key)
        return b"".join([chunk async for chunk in stored.chunks()])

    async def open(self, key: str) -> StoredObject:
        # identity: the bytes exactly as stored, so Content-Length is the object's size.
        response = await self._send("GET", key, self._path(key), unsigned_headers={"accept-encoding": "identity"})
        try:
            if response.status_code != 200:
                raise await self._error("GET", key, response, missing_is_not_found=True)
            length = response.headers.get("content-length", "")
            if not length.isdigit():
                raise S3Error("GET", key, status=200, code="NoContentLength", request_id=_request_id(response))
        except BaseException:
            await response.aclose()
            raise
        return _S3Object(response, int(length), key)

    async def delete(self, key: str) -> None:
        response = await self._send("DELETE", key, self._path(key))
        try:
            if response.status_code in (200, 204):
                return
            code = await _error_code(response)
            # S3 answers 204 whether or not the object existed; some compatibles say 404.
            if response.status_code == 404 and code in (None, "NoSuchKey"):
                return
            raise S3Error("DELETE", key, status=response.status_code, code=code, request_id=_request_id(response))
        finally:
            await response.aclose()

    async def exists(self, key: str) -> bool:
        response = await self._send("HEAD", key, self._path(key))
        try:
            if response.status_code == 200:
                return True
            if response.status_code == 404:  # a HEAD response has no body to tell key from bucket
                return False
            raise await self._error("HEAD", key, response)
        finally:
            await response.aclose()

    async def _send(
        self,
        method: str,
        key: str,
        path: str,
        *,
        content: bytes | None = None,
        payload_hash: str = EMPTY_SHA256,
        headers: Mapping[str, str] | None = None,
        unsigned_headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Sends a signed request (retried on 5xx and dropped connections) and returns the
        response with its body not yet read; the caller closes it. `unsigned_headers` are those
        a proxy on the way may rewrite (Accept-Encoding), which would break the signature."""
        for attempt in range(1, _ATTEMPTS + 1):
            date = format_amz_date(self._clock())
            signed = {
                "host": self._host,
                "x-amz-content-sha256": payload_hash,
                "x-amz-date": date,
                **(headers or {}),
            }
            authorization = self._signer.authorization(method, path, (), signed, payload_hash, amz_date=date)
            request = self._http.build_request(
                method,
                f"{self._scheme}://{self._host}{path}",
                content=content,
                headers={**signed, **(unsigned_headers or {}), "authorization": authorization},
                timeout=self._timeout,
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TimeoutException as exc:
                raise S3Error(method, key, status=None, code=type(exc).__name__, request_id=None) from exc
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if attempt == _ATTEMPTS:
                    raise S3Error(method, key, status=None, code=type(exc).__name__, request_id=None) from exc
                log.warning("S3 %s %s: %s, retrying", method, key, type(exc).__name__)
            else:
                if response.status_code not in _RETRY_STATUSES or attempt == _ATTEMPTS:
                    return response
                log.warning("S3 %s %s: status %s, retrying", method, key, response.status_code)
                await response.aclose()
            await asyncio.sleep(_BACKOFF_SECONDS * 4 ** (attempt - 1))
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    async def _error(
        self, operation: str, key: str, response: httpx.Response, *, missing_is_not_found: bool = False
    ) -> StorageError:
        code = await _error_code(response)
        if missing_is_not_found and response.status_code == 404 and code in (None, "NoSuchKey"):
            return ObjectNotFound(key)
        return S3Error(operation, key, status=response.status_code, code=code, request_id=_request_id(response))


async def _error_code(response: httpx.Response) -> str | None:
    """The `<Code>` of an S3 error document, reading at most a few KiB of it."""
    body = b""
    try:
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > 8192:
                break
    except httpx.HTTPError:
        return None
    match = _ERROR_CODE.search(body)
    return match.group(1).decode("ascii") if match else None


def _request_id(response: httpx.Response) -> str | None:
    for name in ("x-amz-request-id", "x-oss-request-id", "x-cos-request-id"):
        value: str | None = response.headers.get(name)
        if value:
            return value
    return None


class _S3Object:
    def __init__(self, response: httpx.Response, size: int, key: str) -> None:
        self._response = response
        self._size = size
        self._key = key

    @property
    def size(self) -> int:
        return self._size

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw(CHUNK_SIZE):
                yield chunk
        except httpx.HTTPError as exc:
            # Mid-body: the response to the client has started and can only be cut short.
            raise S3Error("GET", self._key, status=200, code=type(exc).__name__, request_id=None) from exc
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()
