"""User schemas: what clients send and what they get back."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.models.user import Role
from app.schemas.common import DisplayName, Email, Password, ReadModel, RequestModel, Username


class NotificationPreferences(BaseModel):
    """Where the user wants to hear about their tickets."""

    qq: bool = True
    email: bool = True


class UserRead(ReadModel):
    id: int
    username: str
    display_name: str
    email: str | None
    role: Role
    is_active: bool
    qq_bound: bool
    created_at: datetime


class UserMe(UserRead):
    notification_preferences: NotificationPreferences = Field(default_factory=NotificationPreferences)


class UserBrief(ReadModel):
    id: int
    display_name: str


class UserRegister(RequestModel):
    username: Username
    password: Password
    display_name: DisplayName | None = None
    email: Email | None = None


class UserCreate(UserRegister):
    role: Role = Role.customer


class UserUpdate(RequestModel):
    """Admin changes to an account; a new password resets it and ends its sessions."""

    display_name: DisplayName | None = None
    email: Email | None = None
    role: Role | None = None
    is_active: bool | None = None
    password: Password | None = None


class MeUpdate(RequestModel):
    display_name: DisplayName | None = None
    email: Email | None = None
    notification_preferences: NotificationPreferences | None = None
    # Changing the password needs the current one, and ends every other session.
    current_password: str | None = Field(default=None, max_length=128)
    password: Password | None = None
