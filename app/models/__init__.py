"""All tables, imported here so that one metadata serves the app and Alembic."""

from app.db.base import Base
from app.models.auth_session import AuthSession, RefreshToken
from app.models.user import ExternalIdentity, IdentityProvider, Role, User

__all__ = ["AuthSession", "Base", "ExternalIdentity", "IdentityProvider", "RefreshToken", "Role", "User"]
