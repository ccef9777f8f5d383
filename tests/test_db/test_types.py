"""Timestamps are stored in UTC and come back timezone-aware on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app.models import User

SHANGHAI = timezone(timedelta(hours=8))


async def test_timestamps_round_trip_as_aware_utc(app):
    db = app.state.ctx.db
    local = datetime(2026, 11, 24, 16, 0, 0, 123456, tzinfo=SHANGHAI)
    async with db.transaction() as session:
        user = User(username="timekeeper", display_name="t", password_changed_at=local, notification_preferences={})
        session.add(user)
        await session.flush()
        user_id = user.id
    async with db.transaction(write=False) as session:
        stored = (await session.execute(select(User).where(User.id == user_id))).scalar_one()
    assert stored.password_changed_at == datetime(2026, 11, 24, 8, 0, 0, 123456, tzinfo=UTC)
    assert stored.password_changed_at.utcoffset() == timedelta(0)
    assert stored.created_at.tzinfo is not None
    assert abs(stored.created_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_filters_compare_instants_not_wall_clocks(app):
    db = app.state.ctx.db
    async with db.transaction() as session:
        session.add(
            User(
                username="early",
                display_name="e",
                notification_preferences={},
                password_changed_at=datetime(2026, 1, 1, 1, 0, tzinfo=UTC),
            )
        )
    boundary = datetime(2026, 1, 1, 8, 30, tzinfo=SHANGHAI)  # 00:30 UTC: before 01:00 UTC
    async with db.transaction(write=False) as session:
        found = (await session.execute(select(User.username).where(User.password_changed_at > boundary))).scalars()
        assert list(found) == ["early"]


async def test_naive_datetimes_are_refused(app):
    db = app.state.ctx.db
    naive = User(
        username="naive", display_name="n", notification_preferences={}, password_changed_at=datetime(2026, 1, 1)
    )
    async with db.session(write=True) as session:
        session.add(naive)
        with pytest.raises(Exception, match="naive datetime"):
            await session.flush()
