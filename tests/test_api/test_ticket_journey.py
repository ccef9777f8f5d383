"""Issue 3's "done when": a customer and an agent carry a ticket from creation to rating
through the API alone (on SQLite, and on PostgreSQL under CI)."""

from __future__ import annotations

from tests.conftest import bearer

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82"
)


async def test_customer_and_agent_carry_a_ticket_from_creation_to_rating(client, customer, agent):
    me, staff = bearer(customer), bearer(agent)
    web = {**me, "X-Client": "web"}

    # The customer uploads a screenshot and opens a ticket with it, from the web.
    upload = await client.post("/api/v1/attachments", files={"file": ("截图.png", PNG, "image/png")}, headers=me)
    assert upload.status_code == 201, upload.text
    created = await client.post(
        "/api/v1/tickets",
        json={"title": "无法登录教务系统", "body": "输入密码后提示错误", "attachment_ids": [upload.json()["id"]]},
        headers={**web, "Idempotency-Key": "journey-1"},
    )
    assert created.status_code == 201, created.text
    ticket = created.json()
    url = f"/api/v1/tickets/{ticket['id']}"

    # The agent finds it in the unassigned queue, takes it, notes something internally, replies.
    queue = (await client.get("/api/v1/tickets", params={"assignee_id": "none", "status": "new"}, headers=staff)).json()
    assert [t["id"] for t in queue["items"]] == [ticket["id"]]
    assigned = await client.patch(
        url, json={"assignee_id": agent["id"], "priority": "high"}, headers={**staff, "If-Match": '"1"'}
    )
    assert assigned.status_code == 200, assigned.text
    await client.post(f"{url}/messages", json={"body": "账号被锁定，需要解锁", "internal": True}, headers=staff)
    reply = await client.post(f"{url}/messages", json={"body": "已为您解锁，请重试"}, headers=staff)
    assert reply.status_code == 201
    assert (await client.get(url, headers=me)).json()["status"] == "open"

    # The customer sees the reply (not the note) and answers; the agent resolves.
    messages = (await client.get(f"{url}/messages", headers=me)).json()
    assert [m["body"] for m in messages] == ["输入密码后提示错误", "已为您解锁，请重试"]
    assert messages[0]["attachments"][0]["filename"] == "截图.png"
    shot = await client.get(messages[0]["attachments"][0]["url"])  # signed link: no header needed
    assert shot.status_code == 200
    assert shot.content == PNG
    await client.post(f"{url}/messages", json={"body": "可以登录了，谢谢"}, headers=me)
    resolved = await client.patch(url, json={"status": "resolved"}, headers=staff)
    assert resolved.json()["status"] == "resolved"

    # The customer rates it; the timeline tells the story the customer may see.
    rated = await client.post(f"{url}/rating", json={"score": 5, "comment": "很快"}, headers=me)
    assert rated.status_code == 200
    assert rated.json()["rating"]["score"] == 5
    timeline = [e["type"] for e in (await client.get(f"{url}/events", headers=me)).json()]
    assert timeline == [
        "ticket.created",
        "ticket.updated",  # priority
        "ticket.message_added",
        "ticket.updated",  # new -> open, automatic
        "ticket.message_added",
        "ticket.updated",  # resolved
        "ticket.rated",
    ]
    full = [e["type"] for e in (await client.get(f"{url}/events", headers=staff)).json()]
    assert {"ticket.assigned", "ticket.note_added"} <= set(full)
    final = (await client.get(url, headers=me)).json()
    assert final["channel"] == "web"
    assert final["first_responded_at"] is not None
    assert final["resolved_at"] is not None
