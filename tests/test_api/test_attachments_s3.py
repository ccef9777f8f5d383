"""Attachments with the s3 backend (HELPDESK_ATTACHMENTS__BACKEND=s3), against moto over real
HTTP with signature checking on: upload, authorised and signed downloads, visibility, an object
deleted behind the app's back, and a storage that refuses the app's requests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from app.models import Attachment
from app.services.s3 import S3Storage
from tests.conftest import bearer, captured_logs, create_user, login
from tests.fakes.s3 import S3Server, moto_s3
from tests.test_api.test_attachments import (
    ATTACHMENTS,
    PDF,
    PNG,
    TICKETS,
    assert_download,
    assert_problem,
    attachment_rows,
    new_ticket,
    upload,
    uploaded,
)

MAX_BYTES = 2 * 1024 * 1024
# The fake server runs in this process and logs what it received, headers included.
FAKE_LOGGERS = ("moto", "werkzeug")


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with moto_s3("helpdesk-api-tests") as server:
        yield server


@pytest.fixture
def settings(settings, s3_server):
    """The suite's settings with attachments on the moto bucket."""
    return settings.model_copy(update={"attachments": s3_server.settings(max_bytes=MAX_BYTES)})


@pytest.fixture
async def other_customer(app, client) -> dict[str, Any]:
    user_id = await create_user(app, "customer2")
    return {"id": user_id, **await login(client, "customer2")}


def bucket_object(server: S3Server, name: str) -> bytes | None:
    client = server.client()
    try:
        body: bytes = client.get_object(Bucket=server.bucket, Key=name)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    return body


async def stored_key(app, attachment_id: int) -> str:
    async with app.state.ctx.db.transaction(write=False) as session:
        attachment = await session.get(Attachment, attachment_id)
        assert attachment is not None
        return attachment.storage_key


async def test_upload_goes_to_the_bucket_and_downloads_come_back_from_it(app, client, customer, s3_server):
    assert isinstance(app.state.ctx.attachments.storage, S3Storage)
    body = await uploaded(client, customer, PNG, filename="屏幕截图.png")

    key = await stored_key(app, body["id"])
    assert await asyncio.to_thread(bucket_object, s3_server, f"attachments/{key}") == PNG
    assert not (app.state.settings.data_dir / "attachments").exists()  # nothing on this machine's disk

    response = await client.get(f"{ATTACHMENTS}/{body['id']}", headers=bearer(customer))
    assert_download(response, inline=True)
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(PNG))
    assert response.headers["etag"] == f'"{hashlib.sha256(PNG).hexdigest()}"'

    signed = await client.get(body["url"])  # the link in `url`: no header needed
    assert_download(signed, inline=True)
    assert signed.content == PNG


async def test_a_large_file_streams_through_unchanged(client, customer):
    data = os.urandom(MAX_BYTES - 17)
    body = await uploaded(client, customer, data, filename="dump.bin", content_type="application/octet-stream")

    response = await client.get(f"{ATTACHMENTS}/{body['id']}", headers=bearer(customer))

    assert_download(response, inline=False)
    assert response.headers["content-length"] == str(len(data))
    assert hashlib.sha256(response.content).hexdigest() == body["sha256"] == hashlib.sha256(data).hexdigest()


async def test_downloads_follow_the_ticket(client, customer, other_customer, agent):
    mine = await uploaded(client, customer, PDF, filename="报告.pdf", content_type="application/pdf")
    await new_ticket(client, customer, attachment_ids=[mine["id"]])
    path = f"{ATTACHMENTS}/{mine['id']}"

    assert (await client.get(path, headers=bearer(customer))).content == PDF
    assert (await client.get(path, headers=bearer(agent))).content == PDF
    assert_problem(await client.get(path, headers=bearer(other_customer)), 404, "attachment_not_found")
    assert_problem(await client.get(path), 401, "not_authenticated")


async def test_customer_never_reaches_an_internal_notes_file(client, customer, agent):
    ticket = await new_ticket(client, customer)
    note = await uploaded(client, agent, PDF, filename="内部评估.pdf", content_type="application/pdf")
    response = await client.post(
        f"{TICKETS}/{ticket['id']}/messages",
        json={"body": "内部备注", "internal": True, "attachment_ids": [note["id"]]},
        headers=bearer(agent),
    )
    assert response.status_code == 201, response.text

    assert (await client.get(f"{ATTACHMENTS}/{note['id']}", headers=bearer(agent))).content == PDF
    assert_problem(
        await client.get(f"{ATTACHMENTS}/{note['id']}", headers=bearer(customer)), 404, "attachment_not_found"
    )


async def test_object_deleted_behind_the_apps_back_is_404_and_logged(app, client, customer, s3_server):
    body = await uploaded(client, customer)
    key = await stored_key(app, body["id"])
    client_s3 = s3_server.client()
    await asyncio.to_thread(client_s3.delete_object, Bucket=s3_server.bucket, Key=f"attachments/{key}")

    with captured_logs() as logs:
        by_header = await client.get(f"{ATTACHMENTS}/{body['id']}", headers=bearer(customer))
        by_link = await client.get(body["url"])

    # As with a file missing from the local disk: the answer for a missing attachment.
    assert_problem(by_header, 404, "attachment_not_found")
    assert_problem(by_link, 404, "attachment_not_found")
    assert f"attachment {body['id']} has no stored object {key}" in logs.getvalue()


async def test_a_storage_that_refuses_the_app_stores_nothing_and_leaks_nothing(
    app, client, customer, admin_engine, s3_server
):
    secret = "wrong-secret-" + "y" * 27
    ctx = app.state.ctx
    ctx.attachments.storage = S3Storage(s3_server.settings(s3_secret_access_key=secret), ctx.http)

    with captured_logs() as logs:
        response = await upload(client, customer, PNG)

    assert_problem(response, 500, "internal_error")
    ours = [line for line in logs.getvalue().splitlines() if not json.loads(line)["logger"].startswith(FAKE_LOGGERS)]
    assert any("SignatureDoesNotMatch" in line for line in ours)  # the operator learns why
    assert not any(secret in line or "Signature=" in line for line in ours)
    assert secret not in response.text
    assert "SignatureDoesNotMatch" not in response.text  # storage details stay in the log
    assert await attachment_rows(admin_engine) == 0
