"""WeChat mini-program login: `wx.login` code -> jscode2session -> our customer account.

`WeChatClient` is the small typed interface to WeChat's HTTP API; tests run it against a
local server that speaks the same protocol.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import httpx
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import WeChatSettings
from app.core.errors import AppError
from app.crud import crud_user
from app.models.user import ExternalIdentity, IdentityProvider, Role, User

log = logging.getLogger(__name__)


class WeChatLoginDisabled(AppError):
    status, code = 403, "wechat_login_disabled"


class WeChatCodeInvalid(AppError):
    status, code = 401, "wechat_code_invalid"


class WeChatUserBlocked(AppError):
    status, code = 403, "wechat_user_blocked"


class WeChatUnavailable(AppError):
    status, code = 503, "wechat_unavailable"


class WeChatMisconfigured(AppError):
    status, code = 502, "wechat_misconfigured"


# errcode -> what it means for the caller (WeChat's documented codes for jscode2session).
_ERRCODES: dict[int, type[AppError]] = {
    40029: WeChatCodeInvalid,  # invalid code
    40163: WeChatCodeInvalid,  # code already used
    40226: WeChatUserBlocked,  # high-risk user
    40013: WeChatMisconfigured,  # invalid appid
    40125: WeChatMisconfigured,  # invalid appsecret
    41002: WeChatMisconfigured,  # appid missing
    41004: WeChatMisconfigured,  # secret missing
    -1: WeChatUnavailable,  # system busy
    45011: WeChatUnavailable,  # API rate limit
}


@dataclass(frozen=True)
class WeChatSession:
    openid: str
    unionid: str | None


class WeChatClient:
    def __init__(self, settings: WeChatSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http

    async def code_to_session(self, code: str) -> WeChatSession:
        if not self.settings.enabled or self.settings.secret is None:
            raise WeChatLoginDisabled
        url = self.settings.base_url.rstrip("/") + "/sns/jscode2session"
        params = {
            "appid": self.settings.app_id or "",
            "secret": self.settings.secret.get_secret_value(),
            "js_code": code,
            "grant_type": "authorization_code",
        }
        try:
            response = await self.http.get(url, params=params, timeout=self.settings.timeout_seconds)
        except httpx.HTTPError as exc:
            log.warning("WeChat jscode2session unreachable: %s", type(exc).__name__)
            raise WeChatUnavailable from None
        if response.status_code != 200:
            log.warning("WeChat jscode2session answered HTTP %s", response.status_code)
            raise WeChatUnavailable
        try:
            # WeChat sends JSON, sometimes labelled text/plain.
            data = response.json()
        except ValueError:
            log.warning("WeChat jscode2session answered with non-JSON")
            raise WeChatUnavailable from None
        if not isinstance(data, dict):
            raise WeChatUnavailable
        try:
            errcode = int(data.get("errcode") or 0)
        except (TypeError, ValueError):
            log.warning("WeChat jscode2session answered an unreadable errcode")
            raise WeChatUnavailable from None
        if errcode != 0:
            log.warning("WeChat jscode2session errcode %s: %s", errcode, str(data.get("errmsg", ""))[:200])
            raise _ERRCODES.get(errcode, WeChatUnavailable)()
        openid = data.get("openid")
        if not isinstance(openid, str) or not openid:
            raise WeChatUnavailable
        unionid = data.get("unionid")
        return WeChatSession(openid=openid, unionid=unionid if isinstance(unionid, str) and unionid else None)


async def find_or_create_customer(session: AsyncSession, wechat: WeChatSession) -> User:
    """The account linked to this openid; a new customer on first login.

    Two first logins at once race on the identity's unique key: the loser's savepoint rolls
    back and it reads the winner's account.
    """
    user = await crud_user.get_by_identity(session, IdentityProvider.wechat, wechat.openid)
    if user is None:
        try:
            async with session.begin_nested():
                user = User(
                    username=f"wx_{secrets.token_hex(8)}",
                    display_name="微信用户",
                    role=Role.customer,
                    is_active=True,
                    notification_preferences={},
                    qq_bound=False,
                )
                session.add(user)
                await session.flush()
                session.add(
                    ExternalIdentity(
                        user_id=user.id,
                        provider=IdentityProvider.wechat,
                        external_id=wechat.openid,
                        union_id=wechat.unionid,
                    )
                )
                await session.flush()
        except IntegrityError:
            user = await crud_user.get_by_identity(session, IdentityProvider.wechat, wechat.openid)
            if user is None:
                raise
    elif wechat.unionid:
        identity = await crud_user.get_identity(session, IdentityProvider.wechat, wechat.openid)
        if identity is not None and identity.union_id != wechat.unionid:
            identity.union_id = wechat.unionid
    return user
