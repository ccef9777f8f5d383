"""Passwords (argon2id), JWT access tokens, opaque refresh tokens, constant-time comparison."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from app.core.config import AuthSettings

JWT_ALGORITHM = "HS256"
JWT_ISSUER = "helpdesk"
JWT_AUDIENCE = "helpdesk-api"


class PasswordHasher:
    """argon2id; hashing runs in a worker thread so the event loop keeps serving."""

    def __init__(self, settings: AuthSettings) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=settings.argon2_time_cost,
                    memory_cost=settings.argon2_memory_kib,
                    parallelism=settings.argon2_parallelism,
                ),
            )
        )
        # Verified against when the username does not exist, so both paths cost the same.
        self._dummy = self._hash.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hash.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        target = password_hash or self._dummy
        ok = await anyio.to_thread.run_sync(self._safe_verify, password, target)
        return ok and password_hash is not None

    def _safe_verify(self, password: str, password_hash: str) -> bool:
        try:
            return bool(self._hash.verify(password, password_hash))
        except Exception:  # a malformed stored hash must not become a 500
            return False


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    session_id: int
    role: str
    expires_at: datetime


class InvalidAccessToken(Exception):
    pass


class TokenSigner:
    """HS256 access tokens with issuer, audience, expiry and session id checked."""

    def __init__(self, key: str, ttl_seconds: int) -> None:
        # Derive a purpose-bound key so the same secret never signs two kinds of things.
        self._key = _derive(key, "access-token")
        self._successor_key = _derive(key, "refresh-successor")
        self.ttl_seconds = ttl_seconds

    def issue(self, *, user_id: int, session_id: int, role: str, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        claims = {
            "iss": JWT_ISSUER,
            "aud": JWT_AUDIENCE,
            "sub": str(user_id),
            "sid": session_id,
            "role": role,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self.ttl_seconds)).timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm=JWT_ALGORITHM)

    def verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[JWT_ALGORITHM],
                audience=JWT_AUDIENCE,
                issuer=JWT_ISSUER,
                options={"require": ["exp", "iat", "sub", "sid", "iss", "aud"]},
            )
            return AccessClaims(
                user_id=int(claims["sub"]),
                session_id=int(claims["sid"]),
                role=str(claims.get("role", "")),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise InvalidAccessToken(str(exc)) from exc

    def refresh_successor(self, spent_token: str) -> str:
        """The token that replaces `spent_token`, derived so that a parallel refresh within the
        grace period can be answered with the very same successor without storing it. Only the
        server can compute it (keyed by the secret)."""
        digest = hmac.new(self._successor_key, spent_token.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _derive(key: str, purpose: str) -> bytes:
    return hmac.new(key.encode(), purpose.encode(), hashlib.sha256).digest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the database stores for a high-entropy token (a fast hash suffices for those)."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)
