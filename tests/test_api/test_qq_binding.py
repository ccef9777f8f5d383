"""Linking QQ accounts to web accounts: codes from `POST /users/me/qq-binding`, redeemed the way
the QQ bot redeems them (QQIdentityService on a real database session), and the account a QQ
user gets on first contact."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.core.errors import QQBindingCodeInvalid, QQBindingRateLimited, UserDisabled
from app.crud import crud_qq_identity
from app.models import Role
from app.models.qq import QQBindingCode
from app.models.ticket import Channel
from app.models.user import ExternalIdentity, IdentityProvider, User
from app.schemas.ticket import TicketCreate
from app.services.qq_identity import (
    ATTEMPT_WINDOW_SECONDS,
    ATTEMPTS_OVERALL,
    ATTEMPTS_PER_QQ,
    BindResult,
    QQIdentityService,
    normalize_code,
)
from tests.conftest import bearer, create_user, login

ME = "/api/v1/users/me"
BINDING = "/api/v1/users/me/qq-binding"
QQ_ID = 3425462029
OTHER_QQ_ID = 10001
CODE = re.compile(r"^[0123456789ABCDEFGHJKMNPQRSTVWXYZ]{8}$")  # Crockford base32
WRONG_CODE = "ZZZZZZZZ"


# --- helpers: the bot's side, each call in a transaction of its own --------------------------


def service(app: Any) -> QQIdentityService:
    ctx = app.state.ctx
    return QQIdentityService(ctx.settings.signing_key(), limiter=ctx.limiter)


async def user_for_qq(app: Any, qq_user_id: int = QQ_ID, nickname: str | None = "小明") -> User:
    async with app.state.ctx.db.transaction() as session:
        return await service(app).user_for_qq(session, qq_user_id, nickname=nickname)


async def bind(app: Any, code: str, qq_user_id: int = QQ_ID, nickname: str | None = "小明") -> BindResult:
    ctx = app.state.ctx
    async with ctx.db.transaction() as session:
        return await service(app).bind(
            session, qq_user_id=qq_user_id, code=code, nickname=nickname, tickets=ctx.tickets
        )


async def issue(client: Any, tokens: dict[str, Any]) -> str:
    response = await client.post(BINDING, headers=bearer(tokens))
    assert response.status_code == 201, response.text
    code: str = response.json()["code"]
    return code


async def open_ticket(app: Any, requester: User, title: str) -> int:
    ctx = app.state.ctx
    async with ctx.db.transaction() as session:
        ticket = await ctx.tickets.create(
            session, TicketCreate(title=title, body="详情见图"), actor=requester, channel=Channel.qq
        )
        return int(ticket.id)


async def fetch_user(app: Any, user_id: int) -> User:
    async with app.state.ctx.db.transaction(write=False) as session:
        user = await session.get(User, user_id)
        assert user is not None
        return user


async def qq_identities(admin_engine: Any) -> list[tuple[str, int, str | None]]:
    async with admin_engine.connect() as conn:
        stmt = (
            select(ExternalIdentity.external_id, ExternalIdentity.user_id, ExternalIdentity.nickname)
            .where(ExternalIdentity.provider == IdentityProvider.qq)
            .order_by(ExternalIdentity.external_id)
        )
        return [tuple(row) for row in (await conn.execute(stmt)).all()]


async def count_users(admin_engine: Any) -> int:
    async with admin_engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(User))).scalar_one())


# --- issuing codes ---------------------------------------------------------------------------


async def test_binding_code_is_eight_symbols_of_crockford_base32(client, customer):
    response = await client.post(BINDING, headers=bearer(customer))

    assert response.status_code == 201, response.text
    assert CODE.match(response.json()["code"])


async def test_binding_code_expires_in_ten_minutes(client, customer):
    before = datetime.now(UTC)
    response = await client.post(BINDING, headers=bearer(customer))

    expires_at = response.json()["expires_at"]
    assert expires_at.endswith("Z")
    lifetime = datetime.fromisoformat(expires_at) - before
    assert timedelta(minutes=9, seconds=55) <= lifetime <= timedelta(minutes=10, seconds=5)


async def test_binding_code_comes_with_chinese_instructions(client, customer):
    response = await client.post(BINDING, headers=bearer(customer))

    body = response.json()
    assert body["instructions"] == f"私聊机器人发送：/绑定 {body['code']}"


async def test_binding_code_instructions_follow_accept_language(client, customer):
    response = await client.post(BINDING, headers={**bearer(customer), "Accept-Language": "en"})

    body = response.json()
    assert body["instructions"] == f"Send this to the bot in a private chat: /bind {body['code']}"


async def test_binding_code_response_is_not_cached(client, customer):
    response = await client.post(BINDING, headers=bearer(customer))

    assert response.headers["cache-control"] == "no-store"


async def test_binding_code_is_stored_only_as_a_hash(client, customer, admin_engine):
    code = await issue(client, customer)

    async with admin_engine.connect() as conn:
        rows = (await conn.execute(select(QQBindingCode.user_id, QQBindingCode.code_hash))).all()
    assert len(rows) == 1
    user_id, code_hash = rows[0]
    assert user_id == customer["id"]
    assert len(code_hash) == 64
    assert code not in code_hash


async def test_codes_are_random(client, customer):
    codes = {await issue(client, customer) for _ in range(5)}

    assert len(codes) == 5


async def test_unauthenticated_caller_cannot_get_a_code(client):
    response = await client.post(BINDING)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_unauthenticated_caller_cannot_unbind(client):
    response = await client.delete(BINDING)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


# --- redeeming codes (the bot's /绑定) -------------------------------------------------------


async def test_binding_links_the_qq_account_to_the_web_account(app, client, customer, admin_engine):
    code = await issue(client, customer)

    result = await bind(app, code)

    assert result.user.id == customer["id"]
    assert result.user.qq_bound is True
    assert await qq_identities(admin_engine) == [(str(QQ_ID), customer["id"], "小明")]


async def test_users_me_shows_qq_bound(app, client, customer):
    assert (await client.get(ME, headers=bearer(customer))).json()["qq_bound"] is False

    await bind(app, await issue(client, customer))

    assert (await client.get(ME, headers=bearer(customer))).json()["qq_bound"] is True


async def test_after_binding_the_qq_account_acts_as_the_web_account(app, client, customer):
    await bind(app, await issue(client, customer))

    user = await user_for_qq(app)

    assert user.id == customer["id"]


@pytest.mark.parametrize("role", [Role.customer, Role.agent, Role.admin])
async def test_every_role_can_bind_their_own_account(app, client, role):
    user_id = await create_user(app, f"bind_{role.value}", role)
    tokens = await login(client, f"bind_{role.value}")

    result = await bind(app, await issue(client, tokens))

    assert result.user.id == user_id
    assert (await client.get(ME, headers=bearer(tokens))).json()["qq_bound"] is True


async def test_code_is_single_use(app, client, customer):
    code = await issue(client, customer)
    await bind(app, code)

    with pytest.raises(QQBindingCodeInvalid):
        await bind(app, code, qq_user_id=OTHER_QQ_ID)


async def test_expired_code_is_refused(app, client, customer, admin_engine):
    code = await issue(client, customer)
    async with admin_engine.begin() as conn:
        await conn.execute(update(QQBindingCode).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))

    with pytest.raises(QQBindingCodeInvalid):
        await bind(app, code)


async def test_wrong_code_is_refused(app, client, customer, admin_engine):
    code = await issue(client, customer)
    wrong = ("1" if code[0] != "1" else "2") + code[1:]

    with pytest.raises(QQBindingCodeInvalid) as refused:
        await bind(app, wrong)

    assert refused.value.code == "qq_binding_code_invalid"
    assert await qq_identities(admin_engine) == []


async def test_malformed_code_is_refused(app):
    with pytest.raises(QQBindingCodeInvalid):
        await bind(app, "绑定码")


async def test_a_new_code_invalidates_the_previous_one(app, client, customer):
    first = await issue(client, customer)
    second = await issue(client, customer)

    with pytest.raises(QQBindingCodeInvalid):
        await bind(app, first)
    assert (await bind(app, second)).user.id == customer["id"]


async def test_code_is_accepted_as_typed_in_lower_case_full_width_and_with_separators(app, client, customer):
    code = await issue(client, customer)
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in code[4:])
    typed = f" {code[:4].lower()}－{full_width}\u3000"

    assert (await bind(app, typed)).user.id == customer["id"]


def test_code_normalisation_reads_lookalikes_as_the_symbols_issued():
    assert normalize_code("o1il-ab cd") == "0111ABCD"


# --- attempt limits --------------------------------------------------------------------------


async def test_wrong_codes_are_limited_per_qq_account(app, client, customer):
    for _ in range(ATTEMPTS_PER_QQ):
        with pytest.raises(QQBindingCodeInvalid):
            await bind(app, WRONG_CODE)
    code = await issue(client, customer)

    with pytest.raises(QQBindingRateLimited) as limited:
        await bind(app, code)  # even the right code, until the window ends

    assert limited.value.code == "qq_binding_rate_limited"
    assert limited.value.status == 429
    assert 0 < limited.value.retry_after <= ATTEMPT_WINDOW_SECONDS


async def test_parallel_wrong_codes_stay_under_the_limit(app):
    """The bot handles one user's messages in parallel: each attempt is counted before its code
    is looked up, so no more than the limit get to try one."""
    outcomes = await asyncio.gather(
        *(bind(app, WRONG_CODE) for _ in range(ATTEMPTS_PER_QQ + 3)), return_exceptions=True
    )
    kinds = sorted(type(outcome).__name__ for outcome in outcomes)
    assert kinds == ["QQBindingCodeInvalid"] * ATTEMPTS_PER_QQ + ["QQBindingRateLimited"] * 3


async def test_a_refused_attempt_does_not_spend_the_overall_budget(app, monkeypatch):
    """A QQ account past its own limit keeps guessing: the budget all accounts share stays
    with the others."""
    monkeypatch.setattr("app.services.qq_identity.ATTEMPTS_OVERALL", ATTEMPTS_PER_QQ + 3)
    for _ in range(ATTEMPTS_PER_QQ):
        with pytest.raises(QQBindingCodeInvalid):
            await bind(app, WRONG_CODE)
    for _ in range(20):
        with pytest.raises(QQBindingRateLimited):
            await bind(app, WRONG_CODE)

    for _ in range(3):
        with pytest.raises(QQBindingCodeInvalid):
            await bind(app, WRONG_CODE, qq_user_id=OTHER_QQ_ID)
    with pytest.raises(QQBindingRateLimited):
        await bind(app, WRONG_CODE, qq_user_id=OTHER_QQ_ID)


async def test_one_qq_accounts_wrong_codes_do_not_block_another(app, client, customer):
    for _ in range(ATTEMPTS_PER_QQ):
        with pytest.raises(QQBindingCodeInvalid):
            await bind(app, WRONG_CODE)

    assert (await bind(app, await issue(client, customer), qq_user_id=OTHER_QQ_ID)).user.id == customer["id"]


async def test_wrong_codes_are_limited_overall(app, client, customer):
    for guesser in range(ATTEMPTS_OVERALL):  # many QQ accounts, one guess each
        with pytest.raises(QQBindingCodeInvalid):
            await bind(app, WRONG_CODE, qq_user_id=20000 + guesser)
    code = await issue(client, customer)

    with pytest.raises(QQBindingRateLimited):
        await bind(app, code, qq_user_id=OTHER_QQ_ID)


async def test_successful_bindings_do_not_count_against_the_limits(app, client):
    for n in range(ATTEMPTS_PER_QQ + 1):
        await create_user(app, f"web{n}")
        tokens = await login(client, f"web{n}")
        await bind(app, await issue(client, tokens))  # the same QQ account moves each time


# --- the account a QQ user gets on first contact ----------------------------------------------


async def test_first_contact_creates_a_customer_named_after_the_nickname(app):
    user = await user_for_qq(app, nickname="小明")

    assert (user.username, user.display_name, user.role) == (f"qq_{QQ_ID}", "小明", Role.customer)
    assert user.password_hash is None
    assert user.is_active is True
    assert user.qq_bound is True


async def test_first_contact_without_nickname_is_named_after_the_qq_number(app):
    user = await user_for_qq(app, nickname="  ")

    assert user.display_name == f"QQ用户{str(QQ_ID)[-4:]}"


async def test_later_contacts_reuse_the_account(app, admin_engine):
    first = await user_for_qq(app)

    again = await user_for_qq(app)

    assert again.id == first.id
    assert await count_users(admin_engine) == 1


async def test_a_changed_nickname_renames_the_auto_created_account(app, admin_engine):
    await user_for_qq(app, nickname="小明")

    user = await user_for_qq(app, nickname="小明同学")

    assert user.display_name == "小明同学"
    assert await qq_identities(admin_engine) == [(str(QQ_ID), user.id, "小明同学")]


async def test_a_changed_nickname_leaves_a_web_accounts_name_alone(app, client, customer, admin_engine):
    await bind(app, await issue(client, customer), nickname="小明")

    user = await user_for_qq(app, nickname="小明同学")

    assert user.display_name == "Customer1"
    assert await qq_identities(admin_engine) == [(str(QQ_ID), customer["id"], "小明同学")]


async def test_concurrent_first_messages_share_one_account(app, admin_engine):
    left, right = await asyncio.gather(user_for_qq(app), user_for_qq(app))

    assert left.id == right.id
    assert await count_users(admin_engine) == 1
    assert await qq_identities(admin_engine) == [(str(QQ_ID), left.id, "小明")]


async def test_a_lost_race_on_first_contact_reads_the_winners_account(app, admin_engine, monkeypatch):
    winner = await user_for_qq(app)
    real_get_identity = crud_qq_identity.get_identity
    calls = 0

    async def read_before_the_winner_committed(session, external_id):
        nonlocal calls
        calls += 1
        return None if calls == 1 else await real_get_identity(session, external_id)

    monkeypatch.setattr(crud_qq_identity, "get_identity", read_before_the_winner_committed)
    loser = await user_for_qq(app)

    assert loser.id == winner.id
    assert await count_users(admin_engine) == 1


async def test_first_contact_never_takes_over_a_registered_username(app):
    registered = await create_user(app, f"qq_{QQ_ID}")

    user = await user_for_qq(app)

    assert user.id != registered
    assert user.username.startswith(f"qq_{QQ_ID}_")


# --- what binding does to the auto-created account ---------------------------------------------


async def test_binding_moves_the_auto_created_accounts_tickets_to_the_web_account(app, client, customer):
    auto = await user_for_qq(app)
    ticket_ids = [await open_ticket(app, auto, "打印机卡纸"), await open_ticket(app, auto, "校园网断线")]

    result = await bind(app, await issue(client, customer))

    assert result.moved_tickets == 2
    listed = (await client.get("/api/v1/tickets", headers=bearer(customer))).json()["items"]
    assert sorted(t["id"] for t in listed) == ticket_ids
    assert {t["requester"]["id"] for t in listed} == {customer["id"]}
    assert {t["version"] for t in listed} == {2}  # a change the requester sees


async def test_moved_tickets_record_the_requester_change_in_their_timeline(app, client, customer):
    auto = await user_for_qq(app)
    ticket_id = await open_ticket(app, auto, "打印机卡纸")

    await bind(app, await issue(client, customer))

    events = (await client.get(f"/api/v1/tickets/{ticket_id}/events", headers=bearer(customer))).json()
    change = events[-1]
    assert change["type"] == "ticket.updated"
    assert change["data"] == {"requester_id": [auto.id, customer["id"]]}
    assert change["actor"]["id"] == customer["id"]
    assert change["internal"] is False


async def test_binding_disables_the_emptied_auto_created_account(app, client, customer):
    auto = await user_for_qq(app)
    await open_ticket(app, auto, "打印机卡纸")

    await bind(app, await issue(client, customer))

    assert (await fetch_user(app, auto.id)).is_active is False


async def test_binding_a_qq_account_bound_to_another_web_account_moves_only_the_link(app, client, customer, agent):
    await bind(app, await issue(client, agent))
    agent_user = await fetch_user(app, agent["id"])
    ticket_id = await open_ticket(app, agent_user, "代客户报修")

    result = await bind(app, await issue(client, customer))

    assert result.moved_tickets == 0
    assert (await client.get(f"/api/v1/tickets/{ticket_id}", headers=bearer(agent))).json()["requester"]["id"] == (
        agent["id"]
    )
    assert (await client.get(ME, headers=bearer(agent))).json()["qq_bound"] is False
    assert (await client.get(ME, headers=bearer(agent))).json()["is_active"] is True


async def test_a_new_binding_replaces_the_qq_account_bound_before(app, client, customer, admin_engine):
    await bind(app, await issue(client, customer), qq_user_id=QQ_ID)

    await bind(app, await issue(client, customer), qq_user_id=OTHER_QQ_ID)

    assert await qq_identities(admin_engine) == [(str(OTHER_QQ_ID), customer["id"], "小明")]


async def test_a_qq_account_whose_account_is_disabled_cannot_bind(app, client, customer, admin_engine):
    auto = await user_for_qq(app)
    async with admin_engine.begin() as conn:
        await conn.execute(update(User).where(User.id == auto.id).values(is_active=False))

    with pytest.raises(UserDisabled):
        await bind(app, await issue(client, customer))


# --- unbinding -------------------------------------------------------------------------------


async def test_unbinding_unlinks_the_qq_account(app, client, customer):
    await bind(app, await issue(client, customer))

    response = await client.delete(BINDING, headers=bearer(customer))

    assert response.status_code == 204
    assert (await client.get(ME, headers=bearer(customer))).json()["qq_bound"] is False


async def test_an_unbound_qq_account_gets_an_account_of_its_own_again(app, client, customer):
    await bind(app, await issue(client, customer))
    await client.delete(BINDING, headers=bearer(customer))

    user = await user_for_qq(app)

    assert user.id != customer["id"]
    assert user.role == Role.customer


async def test_unbinding_without_a_bound_qq_account_is_still_204(client, customer):
    response = await client.delete(BINDING, headers=bearer(customer))

    assert response.status_code == 204


async def test_unbind_reports_whether_a_qq_account_was_bound(app, client, customer):
    await bind(app, await issue(client, customer))
    async with app.state.ctx.db.transaction() as session:
        user = await session.get(User, customer["id"])
        assert user is not None
        assert await service(app).unbind(session, user) is True
        assert await service(app).unbind(session, user) is False
        assert user.qq_bound is False
