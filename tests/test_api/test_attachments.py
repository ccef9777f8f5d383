"""Attachments: uploads sniffed from their bytes, limits, who may download, how files are
served (never HTML or SVG inline), signed links that expire, and idempotent uploads."""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import func, select

from app.core.config import AttachmentSettings
from app.models import Attachment
from app.services.storage import InvalidKey, LocalStorage, ObjectNotFound, new_key
from tests.conftest import bearer, create_user, login

ATTACHMENTS = "/api/v1/attachments"
TICKETS = "/api/v1/tickets"
PROBLEM = "application/problem+json"
MAX_BYTES = 64 * 1024


@pytest.fixture
def settings(settings):
    """The suite's settings with a small upload limit, so limits are cheap to test."""
    return settings.model_copy(update={"attachments": AttachmentSettings(max_bytes=MAX_BYTES)})


def tiny_png() -> bytes:
    """A valid 1x1 red PNG, built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte + one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PNG = tiny_png()
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><circle r="4"/></svg>'
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


BOUNDARY = "helpdesk-test-boundary"


def multipart_head(filename: str) -> bytes:
    escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{escaped}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


MULTIPART_TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


def multipart_body(filename: str, content: bytes) -> bytes:
    return multipart_head(filename) + content + MULTIPART_TAIL


async def upload(client, tokens, content: bytes, filename: str = "photo.png", content_type: str = "image/png", **kw):
    headers = {**bearer(tokens), **kw.pop("headers", {})} if tokens else kw.pop("headers", {})
    return await client.post(ATTACHMENTS, files={"file": (filename, content, content_type)}, headers=headers, **kw)


async def uploaded(client, tokens, content: bytes = PNG, **kw) -> dict[str, Any]:
    response = await upload(client, tokens, content, **kw)
    assert response.status_code == 201, response.text
    return response.json()


async def new_ticket(client, tokens, **fields) -> dict[str, Any]:
    response = await client.post(
        TICKETS, json={"title": "打印机坏了", "body": "见附件", **fields}, headers=bearer(tokens)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def messages_of(client, tokens, ticket_id: int) -> list[dict[str, Any]]:
    response = await client.get(f"{TICKETS}/{ticket_id}/messages", headers=bearer(tokens))
    assert response.status_code == 200, response.text
    return response.json()


def assert_problem(response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["code"] == code
    return body


def assert_download(response, *, inline: bool) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"].startswith("private")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("inline;" if inline else "attachment;"), disposition


def stored_files(app) -> list[Path]:
    root = app.state.settings.data_dir / "attachments"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def attachment_rows(admin_engine) -> int:
    async with admin_engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Attachment))).scalar_one())


@pytest.fixture
async def other_customer(app, client) -> dict[str, Any]:
    user_id = await create_user(app, "customer2")
    return {"id": user_id, **await login(client, "customer2")}


# --- what is stored ----------------------------------------------------------------------------


async def test_png_is_sniffed_whatever_the_client_claims(app, client, customer):
    body = await uploaded(client, customer, PNG, filename="not-really.html", content_type="text/html")
    assert body["content_type"] == "image/png"
    assert body["size"] == len(PNG)
    assert body["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert body["filename"] == "not-really.html"
    assert body["url"].startswith(f"{ATTACHMENTS}/{body['id']}/content?expires=")
    assert set(body) == {"id", "filename", "content_type", "size", "sha256", "url"}

    response = await client.get(f"{ATTACHMENTS}/{body['id']}", headers=bearer(customer))
    assert_download(response, inline=True)
    assert response.headers["content-type"] == "image/png"
    assert response.content == PNG
    # The bytes live under a random key, not under anything the client named.
    [path] = stored_files(app)
    assert path.read_bytes() == PNG
    assert len(path.name) == 32
    assert "html" not in str(path)


async def test_uploaded_html_is_never_served_inline(client, customer):
    body = await uploaded(client, customer, HTML, filename="cat.png", content_type="image/png")
    assert body["content_type"] == "text/html"
    for response in (
        await client.get(f"{ATTACHMENTS}/{body['id']}", headers=bearer(customer)),
        await client.get(body["url"]),
    ):
        assert_download(response, inline=False)
        assert response.headers["content-type"] == "application/octet-stream"
        assert "sandbox" in response.headers["content-security-policy"]
        assert response.content == HTML


@pytest.mark.parametrize(
    "content",
    [
        SVG,
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + SVG,
        b"<!-- Generator: Adobe Illustrator -->\n" + SVG,
        b"\xef\xbb\xbf  " + SVG.upper(),
    ],
    ids=["bare", "xml-declaration", "comment-first", "bom-uppercase"],
)
async def test_svg_is_never_served_inline(client, customer, content):
    body = await uploaded(client, customer, content, filename="logo.svg", content_type="image/svg+xml")
    assert body["content_type"] == "image/svg+xml"
    response = await client.get(body["url"])
    assert_download(response, inline=False)
    assert response.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("content", "stored_type", "served_type", "inline"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg", "image/jpeg", True),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif", "image/gif", True),
        (b"RIFF\x1a\x00\x00\x00WEBPVP8 ", "image/webp", "image/webp", True),
        (PDF, "application/pdf", "application/pdf", False),
        (b"PK\x03\x04\x14\x00\x00\x00", "application/zip", "application/zip", False),
        ("打印机又卡纸了\r\n三楼\tA 区\n".encode(), "text/plain", "text/plain; charset=utf-8", False),
        ("GBK 编码的文本".encode("gbk"), "application/octet-stream", "application/octet-stream", False),
        (b"MZ\x90\x00\x03\x00\x00\x00", "application/octet-stream", "application/octet-stream", False),
    ],
    ids=["jpeg", "gif", "webp", "pdf", "zip", "utf8-text", "gbk-text", "exe"],
)
async def test_types_come_from_the_bytes(client, customer, content, stored_type, served_type, inline):
    body = await uploaded(client, customer, content, filename="file.png", content_type="image/png")
    assert body["content_type"] == stored_type
    response = await client.get(body["url"])
    assert_download(response, inline=inline)
    assert response.headers["content-type"] == served_type
    assert response.content == content


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\小王\\Desktop\\报告.pdf", "报告.pdf"),
        ("wxfile://tmp_8a7d2f.jpg", "tmp_8a7d2f.jpg"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),
        ("a\tb\x01c\x7f?.txt", "a bc_.txt"),
        ("...", "attachment.png"),
        ("", "attachment.png"),
        ("长" * 300 + ".png", "长" * 251 + ".png"),
    ],
)
async def test_filenames_are_made_safe(client, customer, sent, kept):
    # Sent as raw bytes: httpx would percent-encode control characters in the header.
    response = await client.post(
        ATTACHMENTS,
        content=multipart_body(sent, PNG),
        headers={**bearer(customer), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["filename"] == kept
    assert len(body["filename"]) <= 255


async def test_chinese_filename_round_trips_in_content_disposition(client, customer):
    name = "季度报告（终稿）v2.pdf"
    body = await uploaded(client, customer, PDF, filename=name, content_type="application/pdf")
    assert body["filename"] == name
    response = await client.get(f"{ATTACHMENTS}/{body['id']}", headers=bearer(customer))
    assert_download(response, inline=False)
    disposition = response.headers["content-disposition"]
    assert disposition.isascii()
    assert 'filename="' in disposition  # a plain fallback for old clients
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded, errors="strict") == name


# --- bad uploads -------------------------------------------------------------------------------


async def test_file_of_exactly_the_limit_is_accepted(client, customer):
    body = await uploaded(client, customer, b"\x00" * MAX_BYTES, filename="blob.bin")
    assert body["size"] == MAX_BYTES


async def test_file_over_the_limit_is_413_and_stores_nothing(app, client, customer, admin_engine):
    # Inside the multipart allowance of the body limit: the file's own check answers.
    response = await upload(client, customer, b"\x00" * (MAX_BYTES + 1), filename="blob.bin")
    assert_problem(response, 413, "payload_too_large")
    assert await attachment_rows(admin_engine) == 0
    assert stored_files(app) == []


async def test_oversized_body_is_413_from_its_content_length(client, customer):
    response = await upload(client, customer, b"\x00" * (MAX_BYTES * 3), filename="big.bin")
    assert_problem(response, 413, "payload_too_large")


async def test_oversized_body_without_content_length_is_413(app, client, customer, admin_engine):
    async def chunks():
        yield multipart_head("big.bin")
        for _ in range(8):
            yield b"\x00" * (MAX_BYTES // 2)
        yield MULTIPART_TAIL

    response = await client.post(
        ATTACHMENTS,
        content=chunks(),
        headers={**bearer(customer), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload_too_large")
    assert await attachment_rows(admin_engine) == 0
    assert stored_files(app) == []


async def test_missing_file_field_is_422(client, customer):
    response = await client.post(ATTACHMENTS, files={"upload": ("a.png", PNG, "image/png")}, headers=bearer(customer))
    body = assert_problem(response, 422, "validation_error")
    assert {"field": "file", "code": "required"}.items() <= body["errors"][0].items()
    json_body = await client.post(ATTACHMENTS, json={"file": "aGVsbG8="}, headers=bearer(customer))
    assert_problem(json_body, 422, "validation_error")


async def test_unknown_form_field_is_422(client, customer):
    response = await client.post(
        ATTACHMENTS, files={"file": ("a.png", PNG, "image/png")}, data={"ticket_id": "1"}, headers=bearer(customer)
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["field"] == "ticket_id"
    assert body["errors"][0]["code"] == "unknown_field"


async def test_empty_file_is_422(client, customer):
    body = assert_problem(await upload(client, customer, b""), 422, "validation_error")
    assert body["errors"][0]["field"] == "file"


async def test_upload_needs_a_login(client):
    assert_problem(await upload(client, None, PNG), 401, "not_authenticated")


# --- attaching -------------------------------------------------------------------------------


async def test_attach_to_a_new_ticket_and_to_a_reply(client, customer, agent):
    first = await uploaded(client, customer, PNG, filename="屏幕截图.png")
    ticket = await new_ticket(client, customer, attachment_ids=[first["id"]])
    [opening] = await messages_of(client, customer, ticket["id"])
    [shown] = opening["attachments"]
    assert {k: shown[k] for k in ("id", "filename", "content_type", "size", "sha256")} == {
        k: first[k] for k in ("id", "filename", "content_type", "size", "sha256")
    }
    image = await client.get(shown["url"])  # no header: how <img>/<image> load it
    assert_download(image, inline=True)
    assert image.content == PNG

    second = await uploaded(client, agent, PDF, filename="处理说明.pdf", content_type="application/pdf")
    response = await client.post(
        f"{TICKETS}/{ticket['id']}/messages",
        json={"body": "请查看说明", "attachment_ids": [second["id"]]},
        headers=bearer(agent),
    )
    assert response.status_code == 201, response.text
    [attached] = response.json()["attachments"]
    assert attached["id"] == second["id"]
    document = await client.get(attached["url"])
    assert_download(document, inline=False)
    assert document.content == PDF
    # The customer sees the agent's public attachment too.
    assert (await client.get(f"{ATTACHMENTS}/{second['id']}", headers=bearer(customer))).status_code == 200


async def test_someone_elses_upload_cannot_be_attached(client, customer, other_customer):
    theirs = await uploaded(client, other_customer)
    response = await client.post(
        TICKETS, json={"title": "t", "body": "b", "attachment_ids": [theirs["id"]]}, headers=bearer(customer)
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["field"] == "attachment_ids"
    ticket = await new_ticket(client, customer)
    reply = await client.post(
        f"{TICKETS}/{ticket['id']}/messages",
        json={"body": "b", "attachment_ids": [theirs["id"]]},
        headers=bearer(customer),
    )
    assert_problem(reply, 422, "validation_error")


async def test_an_attached_upload_cannot_be_attached_again(client, customer):
    mine = await uploaded(client, customer)
    ticket = await new_ticket(client, customer, attachment_ids=[mine["id"]])
    again = await client.post(
        f"{TICKETS}/{ticket['id']}/messages",
        json={"body": "b", "attachment_ids": [mine["id"]]},
        headers=bearer(customer),
    )
    assert_problem(again, 422, "validation_error")


# --- who may download ------------------------------------------------------------------------


async def test_downloads_follow_the_ticket(client, customer, other_customer, agent, admin):
    mine = await uploaded(client, customer)
    await new_ticket(client, customer, attachment_ids=[mine["id"]])
    path = f"{ATTACHMENTS}/{mine['id']}"
    assert (await client.get(path, headers=bearer(customer))).status_code == 200
    assert (await client.get(path, headers=bearer(agent))).status_code == 200
    assert (await client.get(path, headers=bearer(admin))).status_code == 200
    assert_problem(await client.get(path, headers=bearer(other_customer)), 404, "attachment_not_found")
    assert_problem(await client.get(path), 401, "not_authenticated")
    assert_problem(await client.get(f"{ATTACHMENTS}/999999", headers=bearer(agent)), 404, "attachment_not_found")


async def test_unattached_upload_is_only_its_uploaders(client, customer, other_customer, agent):
    mine = await uploaded(client, customer)
    path = f"{ATTACHMENTS}/{mine['id']}"
    assert (await client.get(path, headers=bearer(customer))).status_code == 200
    assert_problem(await client.get(path, headers=bearer(other_customer)), 404, "attachment_not_found")
    assert_problem(await client.get(path, headers=bearer(agent)), 404, "attachment_not_found")


async def test_internal_note_attachment_is_invisible_to_the_customer(client, customer, agent):
    ticket = await new_ticket(client, customer)
    secret = await uploaded(client, agent, PDF, filename="内部评估.pdf", content_type="application/pdf")
    response = await client.post(
        f"{TICKETS}/{ticket['id']}/messages",
        json={"body": "客户在观察名单上", "internal": True, "attachment_ids": [secret["id"]]},
        headers=bearer(agent),
    )
    assert response.status_code == 201, response.text

    assert (await client.get(f"{ATTACHMENTS}/{secret['id']}", headers=bearer(agent))).status_code == 200
    assert_problem(
        await client.get(f"{ATTACHMENTS}/{secret['id']}", headers=bearer(customer)), 404, "attachment_not_found"
    )
    # No link reaches the customer, and a made-up one opens nothing.
    shown = [a["id"] for m in await messages_of(client, customer, ticket["id"]) for a in m["attachments"]]
    assert secret["id"] not in shown
    content = f"{ATTACHMENTS}/{secret['id']}/content"
    assert_problem(await client.get(content), 404, "attachment_not_found")
    forged = await client.get(content, params={"expires": str(int(time.time()) + 600), "signature": "0" * 64})
    assert_problem(forged, 404, "attachment_not_found")


# --- signed links ----------------------------------------------------------------------------


async def test_signed_url_works_without_a_header_until_it_expires(app, client, customer):
    mine = await uploaded(client, customer)
    response = await client.get(mine["url"])
    assert_download(response, inline=True)
    assert response.content == PNG

    links = app.state.ctx.links
    row = type("Row", (), {"id": mine["id"]})()
    now = time.time()
    ttl = app.state.settings.attachments.url_ttl_seconds
    assert (await client.get(links.url_for(row, now=now))).status_code == 200
    # Issued long enough ago that its expiry (rounded up to the minute) has passed.
    expired = links.url_for(row, now=now - ttl - 120)
    assert int(parse_qs(urlsplit(expired).query)["expires"][0]) < now
    assert_problem(await client.get(expired), 404, "attachment_not_found")


async def test_altered_signed_url_is_refused(client, customer):
    mine = await uploaded(client, customer)
    other = await uploaded(client, customer)
    query = parse_qs(urlsplit(mine["url"]).query)
    expires, signature = query["expires"][0], query["signature"][0]
    content = f"{ATTACHMENTS}/{mine['id']}/content"
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    for params in (
        {"expires": expires, "signature": flipped},
        {"expires": str(int(expires) + 60), "signature": signature},  # a longer life
        {"expires": expires},
        {"signature": signature},
        {"expires": "soon", "signature": signature},
        {"expires": expires, "signature": signature.upper()},
    ):
        assert_problem(await client.get(content, params=params), 404, "attachment_not_found")
    # The signature names one attachment: it opens no other.
    moved = await client.get(
        f"{ATTACHMENTS}/{other['id']}/content", params={"expires": expires, "signature": signature}
    )
    assert_problem(moved, 404, "attachment_not_found")


# --- idempotency -----------------------------------------------------------------------------


async def test_idempotent_upload_replay_returns_the_same_body_and_stores_one_file(app, client, customer, admin_engine):
    headers = {"Idempotency-Key": "upload-1"}
    first = await upload(client, customer, PNG, filename="a.png", headers=headers)
    again = await upload(client, customer, PNG, filename="a.png", headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await attachment_rows(admin_engine) == 1
    assert len(stored_files(app)) == 1

    other_file = await upload(client, customer, HTML, filename="a.png", headers=headers)
    assert_problem(other_file, 422, "idempotency_key_reused")
    assert await attachment_rows(admin_engine) == 1
    assert len(stored_files(app)) == 1


# --- the local storage backend ---------------------------------------------------------------


async def test_local_storage_writes_atomically_and_refuses_foreign_keys(tmp_path):
    storage = LocalStorage(tmp_path / "attachments")
    key = new_key()
    assert not await storage.exists(key)
    await storage.put(key, b"first")
    await storage.put(key, b"second")  # replaces as a whole
    assert await storage.get(key) == b"second"
    opened = await storage.open(key)
    assert opened.size == 6
    assert b"".join([chunk async for chunk in opened.chunks()]) == b"second"
    assert [p.name for p in (tmp_path / "attachments").rglob("*") if p.is_file()] == [key]  # no temp files left
    await storage.delete(key)
    await storage.delete(key)  # deleting twice is fine
    assert not await storage.exists(key)
    with pytest.raises(ObjectNotFound):
        await storage.get(key)
    with pytest.raises(ObjectNotFound):
        await storage.open(key)
    for bad in ("../../etc/passwd", "A" * 32, key + "0", "", "/" + key[1:]):
        with pytest.raises(InvalidKey):
            await storage.put(bad, b"x")
