"""Who a QQ account is in the helpdesk, and linking it to a web account.

A QQ user who never bound gets a customer account of their own on first contact (so tickets
from QQ are first-class tickets on the web and in the app). `POST /users/me/qq-binding` issues
a one-time code; the user sends `/绑定 <code>` to the bot, which calls `bind`: the QQ account is
linked to the code's web account and the auto-created account's tickets move there.

Used by the QQ bot (`app/bot/`) and by the `/users/me/qq-binding` endpoints. Stateless apart from
the key the codes are hashed with and the app's rate limiter; session first, flush never commit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic_core import PydanticCustomError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import QQBindingCodeInvalid, QQBindingRateLimited, UserDisabled
from app.core.ratelimit import RateLimiter
from app.crud import crud_qq_identity, crud_ticket, crud_user
from app.db.base import utcnow
from app.models.user import ExternalIdentity, Role, User
from app.schemas.common import clean_line
from app.services.ticket import TicketService

# Crockford's base32: no I, L, O or U, so no symbol reads as another one.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8  # 40 bits: with the attempt limits below, guessing a live code is hopeless
CODE_TTL = timedelta(minutes=10)
# Wrong codes allowed per window: from one QQ account, and from all QQ accounts together (many
# QQ accounts guessing at once). Only failures count, so real bindings never use the budget up.
ATTEMPTS_PER_QQ = 5
ATTEMPTS_OVERALL = 100
ATTEMPT_WINDOW_SECONDS = 600
NICKNAME_MAX = 64  # display_name and external_identities.nickname are String(64)

_ALPHABET = frozenset(CODE_ALPHABET)
# Crockford's decoding: a symbol the alphabet leaves out is read as the one it looks like.
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_LIMIT_ALL = "qq-binding:all"


@dataclass(frozen=True)
class BindResult:
    user: User  # the web account the QQ account is now linked to
    moved_tickets: int  # tickets moved over from the QQ account's auto-created account


def normalize_code(code: str) -> str:
    """What the user typed -> the code as issued: full-width forms folded (Chinese input
    methods), upper-case, spaces and '-' dropped, O/I/L read as 0/1."""
    text = unicodedata.normalize("NFKC", code).upper()
    return "".join(text.split()).replace("-", "").translate(_LOOKALIKES)


def qq_username(qq_user_id: int) -> str:
    """The username of the account a QQ user gets on first contact (already normalised)."""
    return f"qq_{qq_user_id}"


def default_display_name(qq_user_id: int) -> str:
    return f"QQ用户{str(qq_user_id)[-4:]}"


def clean_nickname(nickname: str | None) -> str | None:
    """A QQ nickname as we store it: one line, no control characters, at most 64 characters;
    None when nothing is left."""
    if nickname is None:
        return None
    try:
        text = clean_line(nickname)
    except PydanticCustomError:  # blank
        return None
    return text[:NICKNAME_MAX].rstrip()


class QQIdentityService:
    def __init__(self, secret_key: str, *, limiter: RateLimiter) -> None:
        # Codes are short (40 bits): a plain hash of a leaked row would be brute-forced within
        # their 10 minutes, an HMAC under a key derived from the server's secret cannot be.
        self._code_key = hmac.new(secret_key.encode(), b"qq-binding-code", hashlib.sha256).digest()
        self.limiter = limiter  # the app's (memory or Redis): attempt limits hold across processes

    # --- the account behind a QQ account -----------------------------------------------------

    async def user_for_qq(self, session: AsyncSession, qq_user_id: int, *, nickname: str | None) -> User:
        """The account linked to this QQ account; a new customer account on first contact
        (username `qq_<id>`, the nickname as display name, no password). The account may be
        disabled (`is_active` false): the caller refuses such users.

        Two first messages at once race on the identity's unique key (or the username's): the
        loser's savepoint rolls back and it reads the winner's account."""
        external_id = _external_id(qq_user_id)
        nickname = clean_nickname(nickname)
        for _ in range(3):
            found = await crud_qq_identity.get_identity(session, external_id)
            if found is not None:
                identity, user = found
                await self._remember_nickname(session, identity, user, qq_user_id, nickname)
                return user
            created = await self._create_account(session, qq_user_id, nickname)
            if created is not None:
                return created
        raise RuntimeError(f"could not create or find the account of QQ {qq_user_id}")

    async def _create_account(self, session: AsyncSession, qq_user_id: int, nickname: str | None) -> User | None:
        """None when a concurrent transaction got there first (the caller reads again)."""
        username = qq_username(qq_user_id)
        if await crud_user.username_exists(session, username):
            # Someone registered that name, or this QQ account had an account before (since
            # bound to a web account and emptied, or unbound): a fresh name, never a takeover.
            username = f"{username}_{secrets.token_hex(3)}"
        try:
            async with session.begin_nested():
                user = User(
                    username=username,
                    display_name=nickname or default_display_name(qq_user_id),
                    password_hash=None,
                    role=Role.customer,
                    is_active=True,
                    notification_preferences={},
                )
                await crud_user.add(session, user)
                await crud_qq_identity.add_identity(
                    session, user_id=user.id, external_id=_external_id(qq_user_id), nickname=nickname
                )
        except IntegrityError:
            return None
        await crud_user.refresh_computed(session, user)
        return user

    async def _remember_nickname(
        self, session: AsyncSession, identity: ExternalIdentity, user: User, qq_user_id: int, nickname: str | None
    ) -> None:
        if nickname is None or nickname == identity.nickname:
            return
        # An auto-created account is named after the QQ nickname and has no other way to change
        # its name; a name someone chose on the web is left alone.
        derived = identity.nickname or default_display_name(qq_user_id)
        if user.display_name == derived and await self._is_auto_account(session, user, identity, qq_user_id):
            user.display_name = nickname
        identity.nickname = nickname
        await session.flush()

    async def _is_auto_account(
        self, session: AsyncSession, user: User, identity: ExternalIdentity, qq_user_id: int
    ) -> bool:
        """Created by `user_for_qq` and never made into more: a customer without a password
        whose only identity is this QQ account."""
        base = qq_username(qq_user_id)
        return (
            user.password_hash is None
            and user.role == Role.customer
            and (user.username == base or user.username.startswith(base + "_"))
            and await crud_qq_identity.count_other_identities(session, user.id, except_id=identity.id) == 0
        )

    # --- binding codes -------------------------------------------------------------------------

    async def issue_code(self, session: AsyncSession, user: User) -> tuple[str, datetime]:
        """A one-time code for `/绑定 <code>`, valid 10 minutes; the user's earlier codes stop
        working. Only its HMAC is stored: the code is a bearer secret."""
        now = utcnow()
        expires_at = now + CODE_TTL
        await crud_qq_identity.delete_codes(session, user_id=user.id, now=now)
        for _ in range(3):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            try:
                async with session.begin_nested():
                    await crud_qq_identity.add_code(
                        session, user_id=user.id, code_hash=self._hash(code), expires_at=expires_at
                    )
            except IntegrityError:  # the same code is live for someone else: draw again
                continue
            return code, expires_at
        raise RuntimeError("could not draw an unused binding code")

    async def bind(
        self,
        session: AsyncSession,
        *,
        qq_user_id: int,
        code: str,
        nickname: str | None,
        tickets: TicketService,
    ) -> BindResult:
        """Links this QQ account to the web account that issued `code`.

        - The QQ account's identity is re-pointed (or created). If it belonged to an account
          `user_for_qq` created, that account's tickets move to the web account (a
          `ticket.updated` event each) and the emptied account is disabled.
        - A web account that had another QQ account bound: the new one replaces it.
        - Wrong, expired or used codes raise `QQBindingCodeInvalid` and count against the
          attempt limits; past them, `QQBindingRateLimited` (with `retry_after`).
        - A QQ account whose account an admin disabled cannot bind (`UserDisabled`).
        """
        external_id = _external_id(qq_user_id)
        found = await crud_qq_identity.get_identity(session, external_id)
        if found is not None and not found[1].is_active:
            raise UserDisabled
        counted = await self._count_attempt(external_id)
        try:
            target = await self._redeem(session, code)
        except Exception:
            await self._refund_attempt(counted)
            raise
        if target is None:
            raise QQBindingCodeInvalid  # the attempt stays counted
        await self._refund_attempt(counted)

        nickname = clean_nickname(nickname)
        await crud_qq_identity.delete_identities(session, target.id, keep_external_id=external_id)
        if found is None:
            try:
                async with session.begin_nested():
                    await crud_qq_identity.add_identity(
                        session, user_id=target.id, external_id=external_id, nickname=nickname
                    )
            except IntegrityError:  # the QQ user's first message, handled at the same moment
                found = await crud_qq_identity.get_identity(session, external_id)
                if found is None:
                    raise
        moved = 0
        if found is not None:
            identity, previous = found
            if previous.id != target.id:
                auto = await self._is_auto_account(session, previous, identity, qq_user_id)
                identity.user_id = target.id
                if auto:
                    moved = await self._move_tickets(session, previous, target, tickets)
                    previous.is_active = False
            if nickname is not None:
                identity.nickname = nickname
        await session.flush()
        await crud_user.refresh_computed(session, target)
        return BindResult(user=target, moved_tickets=moved)

    async def _count_attempt(self, external_id: str) -> list[str]:
        """Counts the attempt against both limits before the code is tried, so parallel attempts
        cannot all slip under them; refused past either (the overall count untouched by a QQ
        account already over its own). Returns the keys counted, for `_refund_attempt`."""
        counted: list[str] = []
        for key, limit in ((f"qq-binding:qq:{external_id}", ATTEMPTS_PER_QQ), (_LIMIT_ALL, ATTEMPTS_OVERALL)):
            wait = await self.limiter.hit(key, limit=limit, window=ATTEMPT_WINDOW_SECONDS)
            counted.append(key)
            if wait:
                await self._refund_attempt(counted)
                raise QQBindingRateLimited(wait)
        return counted

    async def _refund_attempt(self, keys: list[str]) -> None:
        """Only wrong codes count: an attempt that did not fail gives its counts back."""
        for key in keys:
            await self.limiter.refund(key)

    async def _redeem(self, session: AsyncSession, code: str) -> User | None:
        """Spends the code and returns its (active) web account; None for a code that is
        malformed, unknown, expired, used, or spent by a parallel attempt."""
        normalized = normalize_code(code)
        if len(normalized) != CODE_LENGTH or not _ALPHABET.issuperset(normalized):
            return None
        # Looked up by its HMAC: timing reveals nothing about the codes that exist.
        row = await crud_qq_identity.get_code(session, self._hash(normalized))
        now = utcnow()
        if row is None or row.used_at is not None or row.expires_at <= now:
            return None
        if not await crud_qq_identity.spend_code(session, row.id, now):
            return None
        user = await crud_user.get(session, row.user_id)
        return user if user is not None and user.is_active else None

    async def _move_tickets(self, session: AsyncSession, source: User, target: User, tickets: TicketService) -> int:
        ticket_ids = await crud_qq_identity.requested_ticket_ids(session, source.id)
        for ticket_id in ticket_ids:
            ticket = await crud_ticket.reload(session, ticket_id, for_update=True)  # in id order
            # The person binding is the actor: they moved their own tickets.
            await tickets.change_requester(session, ticket, requester=target, actor=target)
        return len(ticket_ids)

    async def unbind(self, session: AsyncSession, user: User) -> bool:
        """Unlinks the user's QQ account; False when none was bound. The QQ account gets an
        account of its own again at its next message."""
        removed = await crud_qq_identity.delete_identities(session, user.id)
        if removed:
            await crud_user.refresh_computed(session, user)
        return removed > 0

    def _hash(self, normalized_code: str) -> str:
        return hmac.new(self._code_key, normalized_code.encode(), hashlib.sha256).hexdigest()


def _external_id(qq_user_id: int) -> str:
    if qq_user_id <= 0:
        raise ValueError(f"not a QQ number: {qq_user_id}")
    return str(qq_user_id)
