"""Builds the OneBot hub from the application's settings (the library knows no settings)."""

from __future__ import annotations

from app.core.config import OneBotSettings
from app.onebot.hub import OneBotConfig, OneBotHub


def onebot_config(settings: OneBotSettings) -> OneBotConfig:
    return OneBotConfig(
        access_token=settings.access_token.get_secret_value().strip(),
        secret=settings.secret.get_secret_value(),
        forward_urls=tuple(settings.forward_urls),
        http_api_urls=dict(settings.http_api),
        timeout=settings.action_timeout_seconds,
        send_rate=settings.send_rate_per_second,
        send_burst=settings.send_burst,
        event_queue_size=settings.event_queue_size,
        reconnect_min=settings.reconnect_min_seconds,
        reconnect_max=max(settings.reconnect_min_seconds, settings.reconnect_max_seconds),
    )


def build_hub(settings: OneBotSettings) -> OneBotHub:
    """No connection is opened here: `hub.start()` runs in the lifespan."""
    return OneBotHub(onebot_config(settings))
