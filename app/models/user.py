"""Accounts, and the external identities (WeChat, QQ) linked to them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    exists,
    select,
    true,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column

from app.db.base import Base, TimestampMixin, UTCDateTime


class Role(StrEnum):
    customer = "customer"
    agent = "agent"
    admin = "admin"


class IdentityProvider(StrEnum):
    wechat = "wechat"
    qq = "qq"


class User(TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('customer', 'agent', 'admin')", name="role_valid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored normalised (NFKC, case-folded) so "Alice" and "alice" are one account.
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254))
    # None for accounts that only sign in through WeChat or QQ.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, validate_strings=True), index=True, default=Role.customer
    )
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    notification_preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ExternalIdentity(TimestampMixin, Base):
    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("provider", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[IdentityProvider] = mapped_column(Enum(IdentityProvider, native_enum=False, length=16))
    # WeChat openid (per mini-program) or QQ number as text.
    external_id: Mapped[str] = mapped_column(String(128))
    # WeChat unionid, when the mini-program is bound to an open-platform account.
    union_id: Mapped[str | None] = mapped_column(String(128), index=True)
    nickname: Mapped[str | None] = mapped_column(String(64))


# Whether a QQ account is bound: one EXISTS in the same statement that loads the user.
User.qq_bound = column_property(
    exists(
        select(ExternalIdentity.id)
        .where(ExternalIdentity.user_id == User.id, ExternalIdentity.provider == IdentityProvider.qq)
        .correlate_except(ExternalIdentity)
    )
)
