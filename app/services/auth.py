"""Login, refresh-token rotation with reuse detection, logout, and access-token checks."""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

from app.core.config import AuthSettings
from app.core.errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    RefreshTokenReused,
    TooManyRequests,
    UserDisabled,
)
from app.core.ratelimit import RateLimiter
from app.core.security import (
    AccessClaims,
    InvalidAccessToken,
    PasswordHasher,
    TokenSigner,
    new_refresh_token,
    token_digest,
)
from app.crud import crud_auth_session, crud_user
from app.db.base import loaded, utcnow
from app.models.auth_session import AuthSession
from app.models.user import ExternalIdentity, User
from app.schemas.auth import TokenPair
from app.schemas.common import normalize_username

# What an authenticated user is read from (User.qq_bound comes from the identities): a commit
# writing any of these clears the cache.
AUTH_MODELS: tuple[type, ...] = (User, AuthSession, ExternalIdentity)


class PrincipalCache:
    """Who is behind an access token's login session, kept for a few seconds, so that
    authenticating a request costs no query (docs/decisions.md "Authentication cache").

    `clear()` runs after every commit that wrote users, login sessions or identities in this process
    (logout, password change, deactivation, role or profile change), and in every process when
    Redis fans it out; the time limit bounds what another process without Redis can miss."""

    def __init__(self, ttl_seconds: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[tuple[int, int], tuple[float, dict[str, Any]]] = {}
        self.on_clear: list[Callable[[], None]] = []  # e.g. tell the other processes
        # Counts the clears: what was read before one must not be stored after it (a logout
        # committed while a request was reading the session it ends).
        self.generation = 0

    def get(self, user_id: int, session_id: int) -> dict[str, Any] | None:
        entry = self._entries.get((user_id, session_id))
        if entry is None:
            return None
        if entry[0] <= self.clock():
            self._entries.pop((user_id, session_id), None)
            return None
        return entry[1]

    def put(self, user_id: int, session_id: int, values: dict[str, Any], *, read_in: int) -> None:
        """Keep `values`, read while the cache was at generation `read_in`, unless it was
        cleared since."""
        if self.ttl_seconds <= 0 or read_in != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # rare: a burst of distinct sessions; the next requests refill it
        self._entries[(user_id, session_id)] = (self.clock() + self.ttl_seconds, values)

    def clear(self) -> None:
        """Forget everything, here and (through `on_clear`) in the other processes."""
        self.forget()
        for notify in self.on_clear:
            notify()

    def forget(self) -> None:
        """Forget everything here (what another process's `clear` arrives as)."""
        self._entries.clear()
        self.generation += 1


def user_values(user: User) -> dict[str, Any]:
    """The user's column values, as loaded (the cache keeps these, never the ORM object)."""
    return {attr.key: getattr(user, attr.key) for attr in inspect(User).column_attrs}


def attached_user(session: AsyncSession, values: dict[str, Any]) -> User:
    """A User for this session from cached values, without a query: persistent and clean, as
    if loaded, so endpoints may read it, change it and flush it as usual. Built as a load
    builds it (committed values, no change events) and attached as it is: `merge` would copy
    it once more, at a cost every authenticated request paid."""
    held = session.identity_map.get(identity_key(User, values["id"]))
    if isinstance(held, User):
        return held
    user = loaded(
        User, {key: copy.deepcopy(value) if isinstance(value, dict | list) else value for key, value in values.items()}
    )
    session.add(user)
    return user


class VerifiedTokens:
    """Access tokens whose signature and claims were checked, by their SHA-256, until they
    expire: the token a client sends with every request is verified once (HMAC and claims cost
    about 0.14 ms a request; docs/decisions.md "Authentication cache"). Expiry is checked at
    every use; revocation is the login session's, checked through PrincipalCache as before."""

    def __init__(self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.time):
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[bytes, tuple[float, AccessClaims]] = {}

    def get(self, token: str) -> AccessClaims | None:
        key = hashlib.sha256(token.encode()).digest()
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, token: str, claims: AccessClaims) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # rare: a burst of distinct tokens; the next requests refill it
        self._entries[hashlib.sha256(token.encode()).digest()] = (claims.expires_at.timestamp(), claims)


class AuthService:
    def __init__(
        self,
        settings: AuthSettings,
        *,
        hasher: PasswordHasher,
        signer: TokenSigner,
        limiter: RateLimiter,
    ) -> None:
        self.settings = settings
        self.hasher = hasher
        self.signer = signer
        self.limiter = limiter
        self.principals = PrincipalCache(settings.principal_cache_seconds)
        self.verified = VerifiedTokens()

    async def login(
        self, session: AsyncSession, *, username: str, password: str, client_ip: str, user_agent: str | None
    ) -> TokenPair:
        username = normalize_username(username)
        user_key = f"login:user:{username}"
        await self._throttle(client_ip, user_key)
        try:
            user = await crud_user.get_by_username(session, username)
            # Verify even for an unknown name (against a dummy hash): both paths take as long.
            valid = await self.hasher.verify(password, user.password_hash if user else None)
        except Exception:
            await self.limiter.refund(user_key)  # not a failed guess
            raise
        if user is None or not valid:
            raise InvalidCredentials  # the failure stays counted
        await self.limiter.reset(user_key)
        if not user.is_active:
            raise UserDisabled
        return await self.start_session(session, user, client_ip=client_ip, user_agent=user_agent)

    async def _throttle(self, client_ip: str, user_key: str) -> None:
        """Counts the attempt per IP and, as a failure until the password proves right, per
        username: counting before the check keeps parallel guesses under the limit too."""
        s = self.settings
        wait = await self.limiter.hit(
            f"login:ip:{client_ip}", limit=s.login_attempts_per_ip, window=s.login_ip_window_seconds
        )
        if wait:
            raise TooManyRequests(retry_after=wait)
        wait = await self.limiter.hit(
            user_key, limit=s.login_failures_per_username, window=s.login_failure_window_seconds
        )
        if wait:
            await self.limiter.refund(user_key)  # refused before any guess: nothing to count
            raise TooManyRequests(retry_after=wait)

    async def start_session(
        self, session: AsyncSession, user: User, *, client_ip: str | None, user_agent: str | None
    ) -> TokenPair:
        now = utcnow()
        auth_session = await crud_auth_session.create_session(
            session, user_id=user.id, now=now, user_agent=user_agent, client_ip=client_ip
        )
        raw = new_refresh_token()
        await self._store_refresh_token(session, auth_session.id, raw, now)
        return self._pair(user, auth_session.id, raw, now)

    async def refresh(self, session: AsyncSession, raw_token: str) -> TokenPair:
        now = utcnow()
        token = await crud_auth_session.get_refresh_token(session, token_digest(raw_token))
        if token is None or token.expires_at <= now:
            raise InvalidRefreshToken
        auth_session, user = token.session, token.session.user
        if auth_session.revoked_at is not None or not user.is_active:
            raise InvalidRefreshToken
        successor = self.signer.refresh_successor(raw_token)
        if token.used_at is None and await crud_auth_session.spend_refresh_token(session, token.id, now):
            await self._store_refresh_token(session, auth_session.id, successor, now)
            await crud_auth_session.touch_session(session, auth_session.id, now)
            return self._pair(user, auth_session.id, successor, now)
        # Spent before. Just now by a parallel request, or within the grace: the same successor.
        spent_at = token.used_at or now
        if now - spent_at <= timedelta(seconds=self.settings.refresh_reuse_grace_seconds):
            return self._pair(user, auth_session.id, successor, now)
        # Later: someone kept an old token. End the whole family; the error keeps this change.
        await crud_auth_session.revoke_session(session, auth_session.id, now=now, reason="refresh_token_reused")
        raise RefreshTokenReused

    async def logout(self, session: AsyncSession, raw_token: str) -> int | None:
        """Ends the session the token belongs to; returns its id (None for an unknown token)."""
        token = await crud_auth_session.get_refresh_token(session, token_digest(raw_token))
        if token is None:
            return None
        await crud_auth_session.revoke_session(session, token.session_id, now=utcnow(), reason="logout")
        return token.session_id

    async def authenticate(self, session: AsyncSession, access_token: str) -> tuple[User, AccessClaims]:
        """The active user behind a valid access token whose session is not revoked, with the
        token's verified claims (session id, expiry)."""
        claims = self.verified.get(access_token)
        if claims is None:
            try:
                claims = self.signer.verify(access_token)
            except InvalidAccessToken:
                raise InvalidToken from None
            self.verified.put(access_token, claims)
        cached = self.principals.get(claims.user_id, claims.session_id)
        if cached is not None:
            return attached_user(session, cached), claims
        generation = self.principals.generation
        user = await crud_auth_session.get_session_user(session, user_id=claims.user_id, session_id=claims.session_id)
        if user is None or not user.is_active:
            raise InvalidToken
        self.principals.put(claims.user_id, claims.session_id, user_values(user), read_in=generation)
        return user, claims

    async def _store_refresh_token(self, session: AsyncSession, session_id: int, raw: str, now: datetime) -> None:
        await crud_auth_session.add_refresh_token(
            session,
            session_id=session_id,
            token_hash=token_digest(raw),
            now=now,
            expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
        )

    def _pair(self, user: User, session_id: int, refresh_token: str, now: datetime) -> TokenPair:
        access = self.signer.issue(user_id=user.id, session_id=session_id, role=user.role.value, now=now)
        return TokenPair(access_token=access, refresh_token=refresh_token, expires_in=self.signer.ttl_seconds)
