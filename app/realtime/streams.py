"""What SSE and WebSocket streams share: who is connected, what they missed, what comes next.

A stream holds no database session while it waits: authentication, revalidation and replay
each use a short transaction of their own.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import RealtimeSettings
from app.core.errors import InvalidToken, NotAuthenticated, TooManyStreams
from app.core.security import token_digest
from app.crud import crud_auth_session, crud_realtime_token, crud_ticket
from app.db.base import utcnow
from app.db.session import Database
from app.models.user import User
from app.realtime.bus import EventBus, Frame, Subscription
from app.services.auth import AuthService

CLOSE_AUTH = 4401  # token expired, logged out, user disabled
CLOSE_TOO_MANY = 4429  # the user has as many streams open as allowed


class StreamClosed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class StreamAuth:
    user: User
    session_id: int
    # The access token's expiry when the stream was opened with one; a single-use token ties
    # the stream to its login session only.
    expires_at: datetime | None


class RealtimeService:
    def __init__(self, settings: RealtimeSettings, *, db: Database, auth: AuthService, bus: EventBus) -> None:
        self.settings = settings
        self.db = db
        self.auth = auth
        self.bus = bus

    def subscribe(self, auth: StreamAuth) -> Subscription:
        """A place on the bus, unless the user already has as many streams open as allowed."""
        if self.bus.count_for(auth.user.id) >= self.settings.max_connections_per_user:
            raise TooManyStreams
        return self.bus.subscribe(auth.user)

    async def issue_token(self, session: AsyncSession, *, user: User, session_id: int) -> tuple[str, datetime]:
        token = secrets.token_urlsafe(32)
        expires_at = utcnow() + timedelta(seconds=self.settings.token_ttl_seconds)
        await crud_realtime_token.add(
            session, token_hash=token_digest(token), user_id=user.id, session_id=session_id, expires_at=expires_at
        )
        return token, expires_at

    async def authenticate(self, *, authorization: str | None, token: str | None) -> StreamAuth:
        """A Bearer header (apps, mini-program) or a single-use `?token=` (browsers)."""
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and credentials:
            async with self.db.transaction(write=False) as session:
                user, claims = await self.auth.authenticate(session, credentials)
            return StreamAuth(user, claims.session_id, claims.expires_at)
        if token:
            return await self._spend_token(token)
        raise NotAuthenticated

    async def _spend_token(self, token: str) -> StreamAuth:
        async with self.db.transaction() as session:
            spent = await crud_realtime_token.spend(session, token_digest(token), now=utcnow())
            if spent is None:
                raise InvalidToken
            user_id, session_id = spent
            found = await crud_auth_session.get_session_user(session, user_id=user_id, session_id=session_id)
        if found is None or not found.is_active:
            raise InvalidToken
        return StreamAuth(found, session_id, None)

    async def still_valid(self, auth: StreamAuth) -> bool:
        if auth.expires_at is not None and utcnow() >= auth.expires_at:
            return False
        async with self.db.transaction(write=False) as session:
            user = await crud_auth_session.get_session_user(session, user_id=auth.user.id, session_id=auth.session_id)
        return user is not None and user.is_active

    async def replay(self, user: User, since: int) -> list[Frame]:
        after = max(0, since - self.settings.replay_overlap)
        async with self.db.transaction(write=False) as session:
            rows = await crud_ticket.events_since(session, user, after_id=after, limit=self.settings.replay_limit)
        return [Frame.of(event, requester_id=requester_id) for event, requester_id in rows]

    async def follow(self, subscription: Subscription, auth: StreamAuth) -> AsyncIterator[Frame | None]:
        """Live frames as they come; None for a keep-alive; StreamClosed when the client is too
        slow or its login ended."""
        next_check = time.monotonic() + self.settings.revalidate_seconds
        while True:
            if subscription.close_code is not None:
                raise StreamClosed(subscription.close_code)
            wait = min(self.settings.keepalive_seconds, max(0.0, next_check - time.monotonic()))
            try:
                frame = await asyncio.wait_for(subscription.queue.get(), timeout=wait)
            except TimeoutError:
                if time.monotonic() >= next_check:
                    if not await self.still_valid(auth):
                        raise StreamClosed(CLOSE_AUTH) from None
                    next_check = time.monotonic() + self.settings.revalidate_seconds
                    continue
                yield None
            else:
                if frame is not None:  # None only wakes us up to look at close_code
                    yield frame
