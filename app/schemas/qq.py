"""QQ binding schemas: the one-time code a signed-in user sends to the QQ bot."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.core.i18n import Lang

# The bot's command for binding (ONEBOT.md), in the language the client asked for.
_INSTRUCTIONS: dict[Lang, str] = {
    "zh": "私聊机器人发送：/绑定 {code}",
    "en": "Send this to the bot in a private chat: /bind {code}",
}


class QQBindingCodeRead(BaseModel):
    code: str = Field(description="8 characters of Crockford base32; single use")
    expires_at: datetime = Field(description="10 minutes after issue")
    instructions: str = Field(description="what to send to the QQ bot, ready to show")

    @classmethod
    def of(cls, code: str, expires_at: datetime, *, lang: Lang) -> QQBindingCodeRead:
        return cls(code=code, expires_at=expires_at, instructions=_INSTRUCTIONS[lang].format(code=code))
