"""Throttling counters, in memory and in Redis (shared by every process)."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis

from app.core.net import TrustedProxies
from app.core.ratelimit import MemoryRateLimiter, RedisRateLimiter
from app.main import create_app
from tests.conftest import REDIS_URL, create_user, make_client

needs_redis = pytest.mark.skipif(REDIS_URL is None, reason="HELPDESK_TEST_REDIS_URL is not set (CI sets it)")


@pytest.fixture
async def redis_limiter():
    assert REDIS_URL is not None
    redis = Redis.from_url(REDIS_URL)
    yield RedisRateLimiter(redis, prefix=f"test:{uuid.uuid4().hex}:")
    await redis.aclose()


async def _exercise(limiter) -> None:
    assert [await limiter.hit("k", limit=2, window=60) for _ in range(2)] == [None, None]
    retry = await limiter.hit("k", limit=2, window=60)
    assert retry is not None
    assert 1 <= retry <= 60
    await limiter.refund("k")
    await limiter.refund("k")
    assert await limiter.hit("k", limit=2, window=60) is None  # two taken back: one left
    assert await limiter.hit("k", limit=2, window=60) is not None
    await limiter.reset("k")
    assert await limiter.hit("k", limit=2, window=60) is None
    await limiter.refund("never-counted")  # nothing to take back: no negative count
    assert [await limiter.hit("never-counted", limit=1, window=60) is None for _ in range(2)] == [True, False]


async def test_memory_limiter_counts_per_window():
    await _exercise(MemoryRateLimiter())


@needs_redis
async def test_redis_limiter_counts_per_window(redis_limiter):
    await _exercise(redis_limiter)


@needs_redis
async def test_login_throttle_is_shared_between_processes(settings, admin_engine):
    """Two app instances (as two processes would) share one Redis: failures add up."""
    from tests.conftest import empty_tables

    await empty_tables(admin_engine)
    configured = settings.model_copy(update={"redis_url": REDIS_URL})
    username = f"shared{uuid.uuid4().hex[:8]}"
    first, second = create_app(configured), create_app(configured)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        await create_user(first, username)
        limit = first.state.ctx.auth.settings.login_failures_per_username
        statuses = []
        for attempt in range(limit + 1):
            target = first if attempt % 2 else second
            async with make_client(target) as client:
                response = await client.post("/api/v1/auth/login", json={"username": username, "password": "nope-nope"})
                statuses.append(response.status_code)
    assert statuses == [401] * limit + [429]


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "expected"),
    [
        ([], "203.0.113.1", "198.51.100.1", "203.0.113.1"),
        (["10.0.0.0/8"], "10.0.0.2", "198.51.100.1", "198.51.100.1"),
        (["10.0.0.0/8"], "10.0.0.2", "198.51.100.1, 10.0.0.9", "198.51.100.1"),
        (["10.0.0.0/8"], "10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # left part is the client's word
        (["10.0.0.0/8"], "10.0.0.2", "not-an-ip", "10.0.0.2"),
        (["10.0.0.0/8"], "10.0.0.2", None, "10.0.0.2"),
        (["10.0.0.0/8"], "203.0.113.5", "198.51.100.1", "203.0.113.5"),
        (["::1"], "::1", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip_believes_only_trusted_proxies(trusted, peer, forwarded, expected):
    assert TrustedProxies(trusted).client_ip(peer, forwarded) == expected
