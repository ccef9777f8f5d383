"""Bad input (issue 9): malformed OneBot frames and forged signatures against the running app.

The app (worker included) serves real sockets; the OneBot simulator holds a reverse WebSocket to
it with the right access token, and the HTTP POST event endpoint is called with and without the
right signature. Over the one WebSocket the simulator carries, malformed frames (a fixed
catalogue and seeded mutations of a customer's `/报修` event) are interleaved with valid `/报修`
messages. The promises: the connection stays open and is never replaced, every valid message is
answered, nothing from a malformed frame or a forged request becomes a ticket or a message, and
each skipped frame is logged. The unit tests in tests/test_onebot cover the same rules per
transport against a bare hub; here the whole path to the database is in play.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.main import create_app
from app.models.ticket import Message, Ticket
from tests.conftest import empty_tables
from tests.fakes.server import serving
from tests.onebot_sim import Implementation, Quirks, ReverseWsClient, sign
from tests.reliability.conftest import scaled
from tests.test_bot.conftest import BOT, CUSTOMER_QQ, QQRig, qq_settings
from tests.test_onebot.conftest import wait_until

TOKEN = "onebot-access-token-of-the-bad-input-suite"
SECRET = "onebot-post-secret-of-the-bad-input-suite"
# Every forged or malformed request carries this in its `/报修` title: a ticket with it in the
# title is one that should never have been created.
FORGED = "伪造"
SEED = 20261124
ROUNDS = scaled(10, 300)  # valid messages over the WebSocket, each after a batch of bad frames
MUTATIONS_PER_ROUND = scaled(15, 60)
ONE_MIB = 1024 * 1024
REPLY_WITHIN = 20.0  # seconds; bounds every wait on a loaded machine

Frame = str | bytes


# --- the rig ----------------------------------------------------------------------------------


@asynccontextmanager
async def guarded_rig(settings: Settings, engine: AsyncEngine) -> AsyncIterator[tuple[QQRig, ReverseWsClient]]:
    """The app with its worker, an access token and an HTTP POST secret, and the simulated bot
    connected over a reverse WebSocket with the right token."""
    await empty_tables(engine)
    impl = Implementation(self_id=BOT, friends={CUSTOMER_QQ}, quirks=Quirks.napcat(), token=TOKEN)
    app = create_app(qq_settings(settings, access_token=SecretStr(TOKEN), secret=SecretStr(SECRET)))
    async with app.router.lifespan_context(app), serving(app) as base_url:
        rig = QQRig(app, impl, base_url)
        client = ReverseWsClient(impl, ws_url(base_url))
        assert await client.connect() == 101
        await wait_until(lambda: rig.hub.registry.action_connection(BOT) is not None, 10)
        await impl.changed.wait_for(lambda: impl.event_links >= 1, 10)
        try:
            yield rig, client
        finally:
            await client.close()


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/onebot/v11/ws"


class SkipLog(logging.Handler):
    """What the OneBot library logs about frames and events it did not take."""

    PHRASES = ("skipped", "ignored", "unknown type", "could not ingest")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if any(phrase in record.getMessage() for phrase in self.PHRASES):
            self.records.append(record)


@contextmanager
def skip_log() -> Iterator[SkipLog]:
    logger = logging.getLogger("app.onebot")
    handler, previous = SkipLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # an unmatched response is logged at DEBUG
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def tickets_and_messages(rig: QQRig) -> tuple[list[str], int]:
    async with rig.app.state.ctx.db.transaction(write=False) as session:
        titles = list((await session.execute(select(Ticket.title).order_by(Ticket.id))).scalars())
        messages = len((await session.execute(select(Message.id))).all())
    return titles, messages


async def answered_or_closed(rig: QQRig, client: ReverseWsClient, title: str) -> None:
    """Until the bot has answered the `/报修 <title>`, or the link closed (no answer can come)."""

    def answered() -> bool:
        return any(s["user_id"] == CUSTOMER_QQ and title in s["text"] for s in rig.impl.sent)

    await rig.impl.changed.wait_for(lambda: answered() or not client.connected, REPLY_WITHIN)


# --- malformed frames -------------------------------------------------------------------------


def forged_event(impl: Implementation, n: int) -> dict[str, Any]:
    """A customer's `/报修` as the simulator would send it: valid until something spoils it."""
    return impl.private_message(CUSTOMER_QQ, f"/报修 {FORGED} {n}")


def dumps(frame: Any) -> str:
    # ASCII escapes, so that a lone surrogate or NaN still travels as JSON text.
    return json.dumps(frame, separators=(",", ":"))


def without(event: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != key}


def catalogue(impl: Implementation, rng: random.Random, *, over_http: bool = False) -> list[tuple[str, Frame]]:
    """One of every kind of bad frame, each built around a `/报修` that must not become a ticket."""
    numbers = iter(range(1, 1000))

    def event() -> dict[str, Any]:  # a message id of its own each, so none is a duplicate of another
        return forged_event(impl, next(numbers))

    text = dumps(event())
    deep = 100_000
    frames: list[tuple[str, Frame]] = [
        ("empty text frame", ""),
        ("not JSON", "这不是 JSON {"),
        ("JSON null", "null"),
        ("JSON array", "[1, 2, 3]"),
        ("JSON string", json.dumps(f"/报修 {FORGED}")),
        ("JSON number", "42"),
        ("truncated", text[: len(text) // 2]),
        ("binary garbage", bytes(rng.randrange(128, 256) for _ in range(64))),
        ("binary NULs", b"\x00" * 32),
        ("deeply nested arrays", "[" * deep + "]" * deep),
        ("deeply nested message", text.replace('"message":[', '"message":' + "[" * deep + "[", 1) + "]" * deep),
        ("oversized garbage", "x" * ONE_MIB),
        ("oversized event", dumps({**event(), "user_id": "not a number", "padding": "x" * ONE_MIB})),
        ("unknown post_type", dumps({**event(), "post_type": "telepathy"})),
        ("unknown message_type", dumps({**event(), "message_type": "guild"})),
        ("post_type not a string", dumps({**event(), "post_type": 5})),
        ("user_id not a number", dumps({**event(), "user_id": "abc"})),
        ("user_id a boolean", dumps({**event(), "user_id": True})),
        ("user_id NaN", dumps({**event(), "user_id": float("nan")})),
        ("user_id beyond 64 bits", dumps({**event(), "user_id": 2**64})),
        ("user_id of 5000 digits", dumps({**event(), "user_id": "9" * 5000})),
        ("self_id beyond 64 bits", dumps({**event(), "self_id": 10**30})),
        ("message_id beyond 64 bits", dumps({**event(), "message_id": 10**40})),
        ("message not a message", dumps({**event(), "message": 12345})),
        ("no message_id", dumps(without(event(), "message_id"))),
        ("no user_id", dumps(without(event(), "user_id"))),
        ("response with an infinite retcode", '{"status":"ok","retcode":1e400,"data":null,"echo":"forged"}'),
        ("response to nothing we asked", dumps({"status": "ok", "retcode": 0, "data": {"x": 1}, "echo": "forged"})),
    ]
    if not over_http:  # over HTTP a missing self_id is taken from the X-Self-ID header
        frames.append(("no self_id", dumps(without(event(), "self_id"))))
    return frames


# Values the protocol rejects for each field of a message event (ONEBOT.md "Types and quirks").
# Not here: what is tolerated on purpose (`message: null` is an empty message; ids as numeric
# strings are ids; over HTTP a missing or empty self_id comes from X-Self-ID).
_BAD_IDS: list[Any] = ["abc", "12a", 2**64, -(2**64), 1.5, True, False, [], {}, [1], "1e5", "9" * 5000]
BAD_VALUES: dict[str, list[Any]] = {
    "self_id": _BAD_IDS,
    "user_id": [None, "", *_BAD_IDS],
    "message_id": [None, "", *_BAD_IDS],
    "post_type": [None, 5, [], {}, "", "telepathy", "MESSAGE", "message "],
    "message_type": [None, 5, [], "", "guild", "PRIVATE"],
    "message": [12345, True, 1.5, [1, 2], [None]],
}
REQUIRED = ["self_id", "user_id", "message_id", "post_type", "message_type", "message"]


def mutation(impl: Implementation, rng: random.Random, n: int, *, over_http: bool = False) -> tuple[str, Frame]:
    """A `/报修` spoiled at random: a required field set to a value the protocol rejects or left
    out, the JSON cut short, or the event buried under nesting deeper than any parser goes."""
    event = forged_event(impl, n)
    kind = rng.choice(["bad value", "missing", "truncated", "buried"])
    if kind == "bad value":
        field = rng.choice(sorted(BAD_VALUES))
        value = rng.choice(BAD_VALUES[field])
        if field == "self_id" and not over_http:
            value = rng.choice([None, "", value])
        return f"{field}={value!r:.40}", dumps({**event, field: value})
    if kind == "missing":
        field = rng.choice(REQUIRED[1:] if over_http else REQUIRED)
        return f"no {field}", dumps(without(event, field))
    text = dumps(event)
    if kind == "truncated":
        cut = rng.randrange(1, len(text))
        return f"truncated at {cut}", text[:cut]
    depth = rng.randrange(2_000, 50_000)
    return f"buried {depth} deep", "[" * depth + text + "]" * depth


# Half of the surrogate pair of an emoji, as a JavaScript implementation that cut a message in two
# escapes it: not Unicode, yet the customer's message is valid and must not be lost (it arrives
# with U+FFFD in its place).
HALF_AN_EMOJI = "\ud83d"


def valid_title(round_: int) -> str:
    return f"第 {round_} 次报修" + (f" {HALF_AN_EMOJI}" if round_ % 2 else "")


# --- the scenarios ----------------------------------------------------------------------------


async def test_malformed_frames_are_skipped_and_logged_and_the_connection_keeps_serving(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    rng = random.Random(SEED)
    with skip_log() as skipped:
        async with guarded_rig(settings, admin_engine) as (rig, client):
            connection = rig.hub.registry.action_connection(BOT)
            assert client.websocket is not None
            bad = catalogue(rig.impl, rng)
            sent_bad: list[str] = []
            valid_titles: list[str] = []
            for round_ in range(ROUNDS):
                batch = bad if round_ == 0 else []
                batch += [mutation(rig.impl, rng, round_ * 1000 + i) for i in range(MUTATIONS_PER_ROUND)]
                for name, frame in batch:
                    await client.websocket.send(frame)
                    sent_bad.append(name)
                title = valid_title(round_)
                await client.websocket.send(dumps(rig.impl.private_message(CUSTOMER_QQ, f"/报修 {title}")))
                title = title.replace(HALF_AN_EMOJI, "\ufffd")
                await answered_or_closed(rig, client, title)
                assert client.connected, f"closed {client.close_code} {client.close_reason} after {sent_bad[-5:]}"
                valid_titles.append(title)
            # The link that carried all this is the one that connected: never dropped, never replaced.
            assert rig.hub.registry.action_connection(BOT) is connection
            titles, messages = await tickets_and_messages(rig)
    assert titles == valid_titles
    assert messages == len(valid_titles)  # each ticket's first message, nothing else
    skipped_names = [r.getMessage() for r in skipped.records]
    assert len(skipped.records) == len(sent_bad), (len(skipped.records), len(sent_bad), skipped_names[-10:])


# Forged HTTP POSTs, and what the endpoint answers each (401: no credential, 403: a wrong one).
FORGED_POSTS = {
    "no signature": 401,
    "signed with another secret": 403,
    "signed with the access token": 403,
    "signature of another body": 403,
    "signature without its sha1= prefix": 403,
    "access token instead of a signature": 401,
}


async def test_forged_http_posts_are_refused_and_create_nothing(settings: Settings, admin_engine: AsyncEngine) -> None:
    async with guarded_rig(settings, admin_engine) as (rig, _client), httpx.AsyncClient(base_url=rig.base_url) as http:
        bodies = []
        for n, (case, status) in enumerate(FORGED_POSTS.items()):
            body = dumps(forged_event(rig.impl, n)).encode()
            headers = {"X-Self-ID": str(BOT), "Content-Type": "application/json", **forged_headers(case, body)}
            refused = await http.post("/onebot/v11/http", content=body, headers=headers)
            assert refused.status_code == status, (case, refused.status_code, refused.text)
            bodies.append(body)
        # A refused event, signed right: accepted, so the refusals were the signatures' doing.
        real = {"X-Self-ID": str(BOT), "Content-Type": "application/json", "X-Signature": sign(SECRET, bodies[0])}
        assert (await http.post("/onebot/v11/http", content=bodies[0], headers=real)).status_code == 204
        await rig.sent_to(CUSTOMER_QQ, f"{FORGED} 0", within=REPLY_WITHIN)
        titles, messages = await tickets_and_messages(rig)
    assert titles == [f"{FORGED} 0"]
    assert messages == 1


def forged_headers(case: str, body: bytes) -> dict[str, str]:
    return {
        "no signature": {},
        "signed with another secret": {"X-Signature": sign("not-the-secret", body)},
        "signed with the access token": {"X-Signature": sign(TOKEN, body)},
        "signature of another body": {"X-Signature": sign(SECRET, body + b" ")},
        "signature without its sha1= prefix": {"X-Signature": sign(SECRET, body).removeprefix("sha1=")},
        "access token instead of a signature": {"Authorization": f"Bearer {TOKEN}"},
    }[case]


async def test_malformed_http_posts_are_answered_4xx_or_skipped_and_create_nothing(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    rng = random.Random(SEED + 1)
    with skip_log() as skipped:
        async with guarded_rig(settings, admin_engine) as (rig, _client):
            frames = catalogue(rig.impl, rng, over_http=True)
            frames += [mutation(rig.impl, rng, 1000 + i, over_http=True) for i in range(scaled(50, 500))]
            answered_204 = 0
            async with httpx.AsyncClient(base_url=rig.base_url, timeout=REPLY_WITHIN) as http:
                for name, frame in frames:
                    body = frame.encode() if isinstance(frame, str) else frame
                    headers = {"X-Self-ID": str(BOT), "X-Signature": sign(SECRET, body)}
                    response = await http.post("/onebot/v11/http", content=body, headers=headers)
                    # 400: not an event; 413: over the body limit; 204: an event, skipped and logged.
                    assert response.status_code in (400, 413, 204), (name, response.status_code, response.text[:200])
                    answered_204 += response.status_code == 204
            await rig.say(CUSTOMER_QQ, "/报修 真的报修")
            await rig.sent_to(CUSTOMER_QQ, "真的报修", within=REPLY_WITHIN)
            titles, messages = await tickets_and_messages(rig)
    assert titles == ["真的报修"]
    assert messages == 1
    # A refused post tells its sender; one answered 204 was taken, so its skipping must be logged.
    assert len(skipped.records) >= answered_204, [r.getMessage() for r in skipped.records][-10:]


FORGED_HANDSHAKES = ["wrong bearer token", "wrong go-cqhttp token", "wrong query token", "no token", "empty bearer"]


async def test_forged_websocket_handshakes_are_refused_and_the_real_link_stays(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    async with guarded_rig(settings, admin_engine) as (rig, _client):
        connection = rig.hub.registry.action_connection(BOT)
        for n, forgery in enumerate(FORGED_HANDSHAKES):
            # An impostor claiming to be our bot: were it let in, it would replace the real link.
            impostor = Implementation(self_id=BOT, friends={CUSTOMER_QQ}, quirks=impostor_quirks(forgery))
            url = ws_url(rig.base_url) + ("?access_token=guess" if forgery == "wrong query token" else "")
            client = ReverseWsClient(
                impostor, url, token="guess" if "wrong" in forgery and "query" not in forgery else ""
            )
            assert await client.connect() == 101, forgery  # upgraded, then closed before any frame is read
            await impostor.emit(forged_event(impostor, n))  # may or may not get out before the close
            assert await client.wait_closed(REPLY_WITHIN) == 1008, forgery
            assert rig.hub.registry.action_connection(BOT) is connection, forgery
        # The real link still works, and only its message became a ticket.
        await rig.say(CUSTOMER_QQ, "/报修 真的报修")
        await rig.sent_to(CUSTOMER_QQ, "真的报修", within=REPLY_WITHIN)
        titles, _ = await tickets_and_messages(rig)
    assert titles == ["真的报修"]


def impostor_quirks(forgery: str) -> Quirks:
    if forgery == "wrong go-cqhttp token":
        return Quirks.gocq()
    return Quirks.napcat(empty_bearer=forgery == "empty bearer")
