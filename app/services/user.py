"""Accounts: registration, self-service changes, admin management, the bootstrap admin."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import AuthSettings
from app.core.errors import LastAdmin, RegistrationClosed, UsernameTaken, WrongPassword
from app.core.security import PasswordHasher
from app.crud import crud_auth_session, crud_user
from app.db.base import utcnow
from app.models.user import Role, User
from app.schemas.common import normalize_username
from app.schemas.user import MeUpdate, UserCreate, UserRegister, UserUpdate


class UserService:
    def __init__(self, settings: AuthSettings, *, hasher: PasswordHasher) -> None:
        self.settings = settings
        self.hasher = hasher

    async def register(self, session: AsyncSession, body: UserRegister) -> User:
        if not self.settings.registration_open:
            raise RegistrationClosed
        return await self.create(session, UserCreate(**body.model_dump(), role=Role.customer))

    async def create(self, session: AsyncSession, body: UserCreate) -> User:
        # Hash first: the slow part happens before this request touches (and on SQLite locks)
        # the database.
        password_hash = await self.hasher.hash(body.password)
        if await crud_user.username_exists(session, body.username):
            raise UsernameTaken
        user = User(
            username=body.username,
            display_name=body.display_name or body.username,
            email=body.email,
            password_hash=password_hash,
            role=body.role,
            is_active=True,
            notification_preferences={},
            qq_bound=False,
        )
        try:
            await crud_user.add(session, user)
        except IntegrityError:  # a concurrent registration of the same name won
            raise UsernameTaken from None
        return user

    async def update_me(self, session: AsyncSession, user: User, body: MeUpdate, *, session_id: int) -> User:
        sent = body.model_fields_set
        if "display_name" in sent and body.display_name is not None:
            user.display_name = body.display_name
        if "email" in sent:
            user.email = body.email
        if "notification_preferences" in sent and body.notification_preferences is not None:
            user.notification_preferences = body.notification_preferences.model_dump()
        if body.password is not None:
            if not body.current_password or not await self.hasher.verify(body.current_password, user.password_hash):
                raise WrongPassword
            await self._set_password(session, user, body.password, keep_session_id=session_id)
        await session.flush()
        await crud_user.refresh_computed(session, user)
        return user

    async def admin_update(self, session: AsyncSession, target: User, body: UserUpdate) -> User:
        sent = body.model_fields_set
        demoted = body.role is not None and body.role != Role.admin
        disabled = body.is_active is False
        removes_admin = target.role == Role.admin and target.is_active and (demoted or disabled)
        if removes_admin and await crud_user.count_active_admins(session) <= 1:
            raise LastAdmin
        if body.display_name is not None:
            target.display_name = body.display_name
        if "email" in sent:
            target.email = body.email
        if body.role is not None:
            target.role = body.role
        if body.is_active is not None:
            target.is_active = body.is_active
            if not body.is_active:
                await crud_auth_session.revoke_user_sessions(session, target.id, now=utcnow(), reason="user_disabled")
        if body.password is not None:
            await self._set_password(session, target, body.password, keep_session_id=None)
        await session.flush()
        await crud_user.refresh_computed(session, target)
        return target

    async def _set_password(
        self, session: AsyncSession, user: User, password: str, *, keep_session_id: int | None
    ) -> None:
        now = utcnow()
        user.password_hash = await self.hasher.hash(password)
        user.password_changed_at = now
        await crud_auth_session.revoke_user_sessions(
            session, user.id, now=now, reason="password_changed", keep_session_id=keep_session_id
        )

    async def ensure_admin(
        self, session: AsyncSession, *, username: str, password: str, display_name: str | None = None
    ) -> bool:
        """Creates the admin account if that username is free; True when it did."""
        username = normalize_username(username)
        if await crud_user.username_exists(session, username):
            return False
        await self.create(
            session,
            UserCreate(username=username, password=password, display_name=display_name or username, role=Role.admin),
        )
        return True
