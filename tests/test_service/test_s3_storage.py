"""The S3 attachment backend: the SigV4 signer against AWS's published examples, the backend
against moto over real HTTP (moto verifies every signature here, see tests/fakes/s3.py), retries
and timeouts against a small local server, and the settings that select it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

import app.services.s3 as s3_module
from app.core.config import AttachmentSettings, Settings
from app.services.s3 import EMPTY_SHA256, S3Error, S3Storage, SigV4Signer
from app.services.storage import CHUNK_SIZE, InvalidKey, LocalStorage, ObjectNotFound, build_storage, new_key
from tests.conftest import captured_logs
from tests.fakes.s3 import S3Server, moto_s3
from tests.fakes.server import serving

# --- Signature Version 4: AWS's examples ------------------------------------------------------
# "Examples: Signature Calculations in AWS Signature Version 4" (Amazon S3 API reference,
# sig-v4-header-based-auth), with its example credentials, bucket and date.

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_DATE = "20130524T000000Z"
AWS_HOST = "examplebucket.s3.amazonaws.com"
WELCOME_SHA256 = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"  # "Welcome to Amazon S3."


def aws_signer() -> SigV4Signer:
    return SigV4Signer(AWS_KEY_ID, SecretStr(AWS_SECRET), region="us-east-1")


def aws_headers(**extra: str) -> dict[str, str]:
    return {"host": AWS_HOST, "x-amz-date": AWS_DATE, "x-amz-content-sha256": EMPTY_SHA256, **extra}


AWS_EXAMPLES = [
    pytest.param(
        "GET",
        "/test.txt",
        [],
        aws_headers(range="bytes=0-9"),
        EMPTY_SHA256,
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        id="get-object",
    ),
    pytest.param(
        "PUT",
        "/test%24file.text",
        [],
        {
            "date": "Fri, 24 May 2013 00:00:00 GMT",
            "host": AWS_HOST,
            "x-amz-date": AWS_DATE,
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "x-amz-content-sha256": WELCOME_SHA256,
        },
        WELCOME_SHA256,
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        id="put-object",
    ),
    pytest.param(
        "GET",
        "/",
        [("lifecycle", "")],
        aws_headers(),
        EMPTY_SHA256,
        "host;x-amz-content-sha256;x-amz-date",
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        id="get-bucket-lifecycle",
    ),
    pytest.param(
        "GET",
        "/",
        [("prefix", "J"), ("max-keys", "2")],  # given out of order: the canonical query sorts
        aws_headers(),
        EMPTY_SHA256,
        "host;x-amz-content-sha256;x-amz-date",
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        id="list-objects",
    ),
]


@pytest.mark.parametrize(("method", "path", "query", "headers", "payload", "signed", "signature"), AWS_EXAMPLES)
def test_signer_reproduces_the_aws_examples(method, path, query, headers, payload, signed, signature):
    authorization = aws_signer().authorization(method, path, query, headers, payload, amz_date=AWS_DATE)

    assert authorization == (
        f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/20130524/us-east-1/s3/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


def test_canonical_request_and_string_to_sign_match_the_aws_get_example():
    signer = aws_signer()
    request, signed = signer.canonical_request("GET", "/test.txt", [], aws_headers(range="bytes=0-9"), EMPTY_SHA256)

    assert request == (
        "GET\n/test.txt\n\n"
        f"host:{AWS_HOST}\nrange:bytes=0-9\nx-amz-content-sha256:{EMPTY_SHA256}\nx-amz-date:{AWS_DATE}\n\n"
        f"host;range;x-amz-content-sha256;x-amz-date\n{EMPTY_SHA256}"
    )
    assert signed == "host;range;x-amz-content-sha256;x-amz-date"
    assert signer.string_to_sign(AWS_DATE, request) == (
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    )


def test_signer_never_shows_its_secret():
    assert AWS_SECRET not in repr(aws_signer())


# --- the backend against moto -------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with moto_s3("helpdesk-service-tests") as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def storage(s3_server, http) -> S3Storage:
    return S3Storage(s3_server.settings(), http)


# The fake server's own logs (it runs in this process and logs what it received, headers too).
FAKE_LOGGERS = ("moto", "werkzeug")


def object_bytes(server: S3Server, name: str) -> bytes:
    """The object as an independent client (boto3) sees it."""
    body: bytes = server.client().get_object(Bucket=server.bucket, Key=name)["Body"].read()
    return body


async def test_put_then_get_returns_the_bytes_under_the_prefix(s3_server, storage):
    key = new_key()
    data = "报修单附件 🖨️".encode() + bytes(range(256))

    await storage.put(key, data)

    assert await storage.get(key) == data
    assert await asyncio.to_thread(object_bytes, s3_server, f"attachments/{key}") == data


async def test_open_knows_the_size_before_the_first_byte_and_streams_in_chunks(storage):
    key = new_key()
    data = os.urandom(3 * CHUNK_SIZE + 123)  # large enough to need several chunks
    await storage.put(key, data)

    stored = await storage.open(key)
    assert stored.size == len(data)  # from Content-Length, nothing read yet
    chunks = [chunk async for chunk in stored.chunks()]

    assert len(chunks) > 1
    assert all(len(chunk) <= CHUNK_SIZE for chunk in chunks)
    assert b"".join(chunks) == data


async def test_an_opened_object_can_be_closed_without_reading_it(storage):
    key = new_key()
    await storage.put(key, b"x" * 10)

    stored = await storage.open(key)
    await stored.aclose()

    assert await storage.get(key) == b"x" * 10  # the connection went back to the pool unharmed


async def test_put_replaces_an_object_whole(storage):
    key = new_key()
    await storage.put(key, b"first version, the longer one")
    await storage.put(key, b"second")

    assert await storage.get(key) == b"second"


async def test_empty_object_round_trips(storage):
    key = new_key()
    await storage.put(key, b"")

    stored = await storage.open(key)
    assert stored.size == 0
    assert [chunk async for chunk in stored.chunks()] == []


async def test_exists_and_delete(storage):
    key = new_key()
    assert not await storage.exists(key)
    await storage.put(key, b"data")
    assert await storage.exists(key)

    await storage.delete(key)

    assert not await storage.exists(key)
    await storage.delete(key)  # deleting a missing object is not an error


async def test_missing_object_is_object_not_found(storage):
    key = new_key()

    with pytest.raises(ObjectNotFound):
        await storage.open(key)
    with pytest.raises(ObjectNotFound):
        await storage.get(key)


async def test_missing_bucket_is_an_error_not_a_missing_object(s3_server, http):
    storage = S3Storage(s3_server.settings(s3_bucket="no-such-bucket"), http)

    with pytest.raises(S3Error) as exc_info:
        await storage.open(new_key())

    assert not isinstance(exc_info.value, ObjectNotFound)
    assert exc_info.value.status == 404
    assert exc_info.value.code == "NoSuchBucket"
    with pytest.raises(S3Error, match="NoSuchBucket"):
        await storage.delete(new_key())
    with pytest.raises(S3Error, match="NoSuchBucket"):
        await storage.put(new_key(), b"data")


@pytest.mark.parametrize("key", ["../etc/passwd", "ABCDEF0123456789ABCDEF0123456789", "a" * 31, "报告.pdf", ""])
async def test_keys_not_made_by_new_key_are_refused_before_any_request(s3_server, key):
    def no_request(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"a request was sent: {request.url}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(no_request)) as client:
        storage = S3Storage(s3_server.settings(), client)
        with pytest.raises(InvalidKey):
            await storage.put(key, b"data")
        with pytest.raises(InvalidKey):
            await storage.open(key)
        with pytest.raises(InvalidKey):
            await storage.get(key)
        with pytest.raises(InvalidKey):
            await storage.exists(key)
        with pytest.raises(InvalidKey):
            await storage.delete(key)


async def test_wrong_secret_is_refused_by_the_signature_check_and_never_shown(s3_server, http):
    secret = "wrong-secret-" + "x" * 27
    storage = S3Storage(s3_server.settings(s3_secret_access_key=secret), http)

    with captured_logs() as logs, pytest.raises(S3Error) as exc_info:
        await storage.put(new_key(), b"data")

    assert exc_info.value.status == 403
    assert exc_info.value.code == "SignatureDoesNotMatch"
    ours = [line for line in logs.getvalue().splitlines() if not json.loads(line)["logger"].startswith(FAKE_LOGGERS)]
    shown = "\n".join(ours) + str(exc_info.value) + repr(exc_info.value) + repr(storage)
    assert secret not in shown
    assert "Signature=" not in shown


async def test_unknown_access_key_is_refused(s3_server, http):
    storage = S3Storage(s3_server.settings(s3_access_key_id="AKIANOTAKNOWNKEY0000"), http)

    with pytest.raises(S3Error) as exc_info:
        await storage.exists(new_key())

    assert exc_info.value.status == 403


async def test_virtual_hosted_addressing_puts_the_bucket_in_the_host(s3_server):
    """OSS and COS want bucket.endpoint/key. DNS has no such name here, so the transport sends
    the request to moto's address; the Host header (and so the signature) is the real one."""
    port = httpx.URL(s3_server.endpoint_url).port
    settings = s3_server.settings(s3_endpoint_url=f"http://s3.example.test:{port}", s3_addressing="virtual")
    hosts: list[str] = []

    class ToLocalhost(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self._inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            hosts.append(request.headers["host"])
            request.url = request.url.copy_with(host="127.0.0.1")
            return await self._inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self._inner.aclose()

    async with httpx.AsyncClient(transport=ToLocalhost()) as client:
        storage = S3Storage(settings, client)
        key = new_key()
        await storage.put(key, b"virtual")
        assert await storage.get(key) == b"virtual"

    assert storage.url_for(key) == f"http://{s3_server.bucket}.s3.example.test:{port}/attachments/{key}"
    assert set(hosts) == {f"{s3_server.bucket}.s3.example.test:{port}"}
    assert await asyncio.to_thread(object_bytes, s3_server, f"attachments/{key}") == b"virtual"


async def test_prefix_can_be_empty_or_nested(s3_server, http):
    key = new_key()
    await S3Storage(s3_server.settings(s3_prefix=""), http).put(key, b"top level")
    await S3Storage(s3_server.settings(s3_prefix="helpdesk/prod/"), http).put(key, b"nested")

    assert await asyncio.to_thread(object_bytes, s3_server, key) == b"top level"
    assert await asyncio.to_thread(object_bytes, s3_server, f"helpdesk/prod/{key}") == b"nested"


# --- retries and timeouts, against a small local server ---------------------------------------


class FlakyS3:
    """Answers `failures` requests with 503 SlowDown, then 200; with `hang`, only once released."""

    def __init__(self, failures: int, *, hang: bool = False) -> None:
        self.failures = failures
        self.hang = hang
        self.release = asyncio.Event()
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {name.decode(): value.decode() for name, value in scope["headers"]}
        self.requests.append({"method": scope["method"], "headers": headers, "body": body})
        if self.hang:
            await self.release.wait()
        if len(self.requests) <= self.failures:
            status, payload = 503, b"<Error><Code>SlowDown</Code></Error>"
        else:
            status, payload = 200, b""
        response_headers = [(b"content-length", str(len(payload)).encode()), (b"x-amz-request-id", b"REQ123")]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(s3_module, "_BACKOFF_SECONDS", 0.0)


def plain_settings(url: str, **overrides: Any) -> AttachmentSettings:
    return AttachmentSettings(
        backend="s3",
        s3_endpoint_url=url,
        s3_bucket="bucket",
        s3_access_key_id="key-id",
        s3_secret_access_key="secret",  # type: ignore[arg-type]
        **overrides,
    )


@pytest.mark.usefixtures("no_backoff")
async def test_slow_down_is_retried_and_the_payload_hash_is_signed(http):
    fake = FlakyS3(failures=2)
    async with serving(fake) as url:
        await S3Storage(plain_settings(url), http).put(new_key(), b"payload")

    assert len(fake.requests) == 3
    last = fake.requests[-1]
    assert last["body"] == b"payload"
    assert last["headers"]["x-amz-content-sha256"] == hashlib.sha256(b"payload").hexdigest()
    assert "x-amz-content-sha256" in last["headers"]["authorization"]


@pytest.mark.usefixtures("no_backoff")
async def test_a_failure_that_lasts_is_a_storage_error_with_the_status(http):
    fake = FlakyS3(failures=10)
    async with serving(fake) as url:
        with pytest.raises(S3Error) as exc_info:
            await S3Storage(plain_settings(url), http).put(new_key(), b"payload")

    assert len(fake.requests) == 3
    assert (exc_info.value.status, exc_info.value.code, exc_info.value.request_id) == (503, "SlowDown", "REQ123")


async def test_a_server_that_does_not_answer_times_out(http):
    fake = FlakyS3(failures=0, hang=True)
    async with serving(fake) as url:
        with pytest.raises(S3Error) as exc_info:
            await S3Storage(plain_settings(url, s3_timeout_seconds=0.1), http).exists(new_key())
        fake.release.set()

    assert exc_info.value.status is None
    assert exc_info.value.code == "ReadTimeout"
    assert len(fake.requests) == 1  # a timeout is not retried: a request waits about one timeout


@pytest.mark.usefixtures("no_backoff")
async def test_an_unreachable_server_is_a_storage_error(http):
    async with serving(FlakyS3(failures=0)) as url:
        pass  # the port is free again
    with pytest.raises(S3Error) as exc_info:
        await S3Storage(plain_settings(url), http).exists(new_key())

    assert exc_info.value.code == "ConnectError"


# --- settings ---------------------------------------------------------------------------------


async def test_local_is_the_default_backend(tmp_path, http):
    assert isinstance(build_storage(AttachmentSettings(), data_dir=tmp_path, http=http), LocalStorage)


async def test_s3_backend_is_built_from_the_environment(monkeypatch, tmp_path, http):
    environment = {
        "HELPDESK_ATTACHMENTS__BACKEND": "s3",
        "HELPDESK_ATTACHMENTS__S3_ENDPOINT_URL": "https://cos.ap-guangzhou.myqcloud.com/",
        "HELPDESK_ATTACHMENTS__S3_BUCKET": "helpdesk-1250000000",
        "HELPDESK_ATTACHMENTS__S3_REGION": "ap-guangzhou",
        "HELPDESK_ATTACHMENTS__S3_ACCESS_KEY_ID": "AKIDexample",
        "HELPDESK_ATTACHMENTS__S3_SECRET_ACCESS_KEY": "cos-secret",
        "HELPDESK_ATTACHMENTS__S3_ADDRESSING": "virtual",
        "HELPDESK_ATTACHMENTS__S3_PREFIX": "helpdesk/",
        "HELPDESK_ATTACHMENTS__S3_TIMEOUT_SECONDS": "5",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    settings = Settings(_env_file=None, data_dir=tmp_path).attachments  # type: ignore[call-arg]
    storage = build_storage(settings, data_dir=tmp_path, http=http)

    assert isinstance(storage, S3Storage)
    assert settings.s3_endpoint_url == "https://cos.ap-guangzhou.myqcloud.com"
    assert settings.s3_timeout_seconds == 5
    key = "0" * 32
    assert storage.url_for(key) == f"https://helpdesk-1250000000.cos.ap-guangzhou.myqcloud.com/helpdesk/{key}"
    assert "cos-secret" not in repr(settings) + repr(storage)


def test_s3_backend_needs_endpoint_bucket_and_keys():
    with pytest.raises(ValidationError) as exc_info:
        AttachmentSettings(backend="s3", s3_bucket="helpdesk", s3_secret_access_key="")  # type: ignore[arg-type]

    message = str(exc_info.value)
    for name in ("S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"):
        assert f"HELPDESK_ATTACHMENTS__{name}" in message
    assert "S3_BUCKET" not in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("s3_endpoint_url", "minio:9000"),
        ("s3_endpoint_url", "ftp://minio:9000"),
        ("s3_endpoint_url", "http://minio:9000/bucket"),
        ("s3_endpoint_url", "https://user:pass@oss-cn-hangzhou.aliyuncs.com"),
        ("s3_bucket", "Helpdesk"),
        ("s3_bucket", "hd"),
        ("s3_bucket", "-helpdesk"),
        ("s3_bucket", "help_desk"),
        ("s3_prefix", "/attachments/"),
        ("s3_prefix", "a/../b/"),
        ("s3_prefix", "a//b/"),
        ("s3_prefix", "附件/"),
        ("s3_prefix", "a b/"),
        ("s3_addressing", "dns"),
    ],
)
def test_malformed_s3_settings_are_refused(field, value):
    with pytest.raises(ValidationError):
        AttachmentSettings(**{field: value})
