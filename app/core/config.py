"""Typed settings: one root read from the environment (prefix HELPDESK_, nested with __) and .env.

Nothing else reads os.environ. `load_settings()` also resolves the development secret key,
which is generated once and kept under the data directory.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values people paste from examples; a production server must not sign tokens with them.
_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev", "development", "please-change-me"}
MIN_SECRET_LENGTH = 32


class AuthSettings(BaseModel):
    registration_open: bool = True
    access_token_ttl_seconds: int = Field(default=15 * 60, ge=30)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    # A spent refresh token presented again within this window returns the same successor
    # (apps that refresh from two places at once); later it counts as theft.
    refresh_reuse_grace_seconds: int = Field(default=30, ge=0)
    # argon2id cost; tests lower these.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    # Login throttling: failed attempts per username, attempts per client IP.
    login_failures_per_username: int = Field(default=5, ge=1)
    login_failure_window_seconds: int = Field(default=300, ge=1)
    login_attempts_per_ip: int = Field(default=30, ge=1)
    login_ip_window_seconds: int = Field(default=60, ge=1)
    # How long a process trusts that an access token's login session and user are as it last
    # read them (0: read them on every request). Changes made through this process, or any
    # process when Redis is configured, take effect at once (docs/decisions.md).
    principal_cache_seconds: float = Field(default=10.0, ge=0, le=300)


class WeChatSettings(BaseModel):
    app_id: str | None = None
    secret: SecretStr | None = None
    base_url: str = "https://api.weixin.qq.com"
    timeout_seconds: float = Field(default=5.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.app_id and self.secret and self.secret.get_secret_value())


class AttachmentSettings(BaseModel):
    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    # Lifetime of the signed download links handed out in `url`.
    url_ttl_seconds: int = Field(default=600, ge=10)
    # Where the bytes live: `local` (under data_dir/attachments, one machine) or `s3` (any
    # S3-compatible object storage: MinIO, Alibaba OSS, Tencent COS, AWS S3; app/services/s3.py).
    backend: Literal["local", "s3"] = "local"
    # scheme://host[:port] only, e.g. https://oss-cn-hangzhou.aliyuncs.com,
    # https://cos.ap-guangzhou.myqcloud.com, http://minio:9000.
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    # The SigV4 signing region (OSS: oss-cn-hangzhou; COS: ap-guangzhou; MinIO: us-east-1).
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # Prepended to every object key, so one bucket can hold other things too.
    s3_prefix: str = "attachments/"
    # `path` (endpoint/bucket/key: MinIO) or `virtual` (bucket.endpoint/key: OSS, COS, AWS).
    s3_addressing: Literal["path", "virtual"] = "path"
    s3_timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint_is_an_origin(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("s3_endpoint_url must be an http:// or https:// URL")
        if parts.path or parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("s3_endpoint_url must be scheme://host[:port], without path, query or credentials")
        return value

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_name(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        # S3's bucket naming rules; they also keep the name safe in a host name and a path.
        if not (
            3 <= len(value) <= 63
            and set(value) <= _BUCKET_CHARACTERS
            and value[0] not in ".-"
            and value[-1] not in ".-"
            and ".." not in value
        ):
            raise ValueError("s3_bucket must be 3-63 lower-case letters, digits, dots and hyphens")
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        # Kept to characters that need no encoding, and no "." or ".." segments that an HTTP
        # client would normalise away (the signature covers the path as sent).
        segments = value.split("/")
        if (
            not set(value) <= _PREFIX_CHARACTERS
            or value.startswith("/")
            or "" in segments[:-1]
            or any(segment in (".", "..") for segment in segments)
        ):
            raise ValueError("s3_prefix must be letters, digits, '-', '_', '.' and '/'-separated segments")
        return value

    @model_validator(mode="after")
    def _s3_is_complete(self) -> AttachmentSettings:
        if self.backend != "s3":
            return self
        missing = [
            f"HELPDESK_ATTACHMENTS__{name.upper()}"
            for name, present in (
                ("s3_endpoint_url", self.s3_endpoint_url),
                ("s3_bucket", self.s3_bucket),
                ("s3_access_key_id", self.s3_access_key_id),
                ("s3_secret_access_key", self.s3_secret_access_key and self.s3_secret_access_key.get_secret_value()),
            )
            if not present
        ]
        if missing:
            raise ValueError(f"the s3 attachment backend needs {', '.join(missing)}")
        return self


_BUCKET_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_PREFIX_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./")


class TicketSettings(BaseModel):
    # {date} is the business day in HELPDESK_TIMEZONE, {seq} that day's counter.
    number_format: str = "{date:%Y%m%d}-{seq:04d}"
    reopen_window_days: int = Field(default=7, ge=0)
    # Resolved tickets close by themselves after this many days (0: never).
    auto_close_days: int = Field(default=7, ge=0)
    rating_edit_days: int = Field(default=7, ge=0)

    @field_validator("number_format")
    @classmethod
    def _formats(cls, value: str) -> str:
        from datetime import date

        try:
            value.format(date=date(2026, 1, 1), seq=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"number_format must use only {{date}} and {{seq}}: {exc}") from exc
        if "{seq" not in value:
            raise ValueError("number_format must contain {seq}")
        return value


class WebhookSettings(BaseModel):
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    # A webhook whose deliveries failed for good this many times in a row is switched off.
    disable_after_failures: int = Field(default=10, ge=1)


class RealtimeSettings(BaseModel):
    token_ttl_seconds: int = Field(default=60, ge=5)
    keepalive_seconds: float = Field(default=15.0, gt=0)
    # How often an open stream re-checks that its login session is still alive (logout,
    # password change, disabled user -> WebSocket close 4401).
    revalidate_seconds: float = Field(default=30.0, gt=0)
    # Resume replays from this many ids before the client's last one: ids are assigned at
    # insert, not commit, so a late commit can carry a lower id. Clients de-duplicate by id.
    replay_overlap: int = Field(default=50, ge=0)
    replay_limit: int = Field(default=1000, ge=1)
    # Open streams per user (tabs, devices); one more is refused.
    max_connections_per_user: int = Field(default=10, ge=1)


class WorkerSettings(BaseModel):
    # Run the job worker inside the API process (the embedded default); `helpdesk worker`
    # runs it alone, `helpdesk serve --no-worker` serves only.
    enabled: bool = True
    concurrency: int = Field(default=4, ge=1)
    lease_seconds: float = Field(default=300.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)


class OneBotSettings(BaseModel):
    """QQ through OneBot v11 (NapCat, LLOneBot, Lagrange.OneBot, go-cqhttp); see ONEBOT.md."""

    # Serve the inbound endpoints /onebot/v11/ws (reverse WebSocket) and /onebot/v11/http
    # (HTTP POST events). Without an access token they accept loopback peers only, and
    # production refuses to start that way.
    inbound: bool = True
    access_token: SecretStr = SecretStr("")
    # HTTP POST X-Signature secret: a setting of its own, separate from the access token.
    secret: SecretStr = SecretStr("")
    # Forward WebSocket URLs we connect to, e.g. ws://127.0.0.1:3001/ (NapCat's default).
    forward_urls: list[str] = Field(default_factory=list)
    # HTTP API base URL per bot (self_id), e.g. {"123456789": "http://127.0.0.1:3000"}.
    http_api: dict[int, str] = Field(default_factory=dict)
    action_timeout_seconds: float = Field(default=30.0, gt=0)
    # Outbound messages per bot: QQ freezes accounts that send too fast.
    send_rate_per_second: float = Field(default=1.0, gt=0)
    send_burst: int = Field(default=5, ge=1)
    event_queue_size: int = Field(default=1024, ge=1)
    reconnect_min_seconds: float = Field(default=1.0, gt=0)
    reconnect_max_seconds: float = Field(default=60.0, gt=0)
    # --- the QQ helpdesk on top ---
    # Groups where agents work: new and urgent tickets are posted there, agent commands work there.
    agent_groups: list[int] = Field(default_factory=list)
    # The bot that posts to agent groups and notifies requesters of tickets not opened from QQ.
    bot_id: int | None = None
    auto_approve_friends: bool = True
    # Other bots in the same groups (QQ numbers): their messages are ignored, so two bots never
    # answer each other in a loop.
    ignored_users: list[int] = Field(default_factory=list)
    # QQ drops over-long messages: longer texts go out in parts of at most this many characters.
    message_max_chars: int = Field(default=1500, ge=100)
    image_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    image_timeout_seconds: float = Field(default=15.0, gt=0)


class SearchSettings(BaseModel):
    # Domain words for segmentation, one per line in jieba's `word [frequency] [tag]` format
    # (building and system names: 图书馆三楼, 教务系统). Unset: jieba's dictionary alone.
    user_dictionary: Path | None = None
    # A 1-2 character query that is not a dictionary word is a substring scan (no index can
    # serve it); it looks at the titles and messages of this many of the newest tickets.
    like_window: int = Field(default=200_000, ge=1000)
    # Relevance is computed for the newest this-many matching texts (after filters and
    # visibility), so a common word costs the same at any size; other sorts see every match.
    rank_window: int = Field(default=1000, ge=100)


class SlaSettings(BaseModel):
    # The business calendar (working hours, holidays, 调休 make-up days) as TOML or JSON; see
    # docs/decisions.md "SLA". A calendar saved through /business-calendar wins over it.
    # Unset: Monday to Friday 09:00-18:00 until an admin saves one.
    calendar_file: Path | None = None
    # sla.warning goes out when this share of a target's business time has passed.
    warning_share: float = Field(default=0.8, gt=0, lt=1)


class LlmProviderSettings(BaseModel):
    """One OpenAI-compatible endpoint. `preset` (deepseek, dashscope, zhipu, moonshot, ark,
    siliconflow, ollama, vllm) fills base_url, model and the capability flags that are not given;
    app/llm/presets.py lists them."""

    name: str = Field(min_length=1, max_length=64)
    preset: str | None = None
    base_url: str = ""
    api_key: SecretStr = SecretStr("")
    model: str = ""
    # Capability flags: what the provider accepts (None: the preset's value, else the default).
    json_object: bool | None = None  # response_format={"type": "json_object"}
    json_schema: bool | None = None  # response_format={"type": "json_schema", ...}
    tools: bool | None = None
    stream_usage: bool | None = None  # stream_options={"include_usage": true}
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_tokens: int = Field(default=1024, ge=16)
    # Per-feature model, e.g. {"triage": "qwen-turbo", "reply": "qwen-max"}.
    models: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _apply_preset(self) -> LlmProviderSettings:
        from app.llm.presets import apply_preset

        apply_preset(self)
        if not self.base_url or not self.model:
            raise ValueError(f"LLM provider {self.name!r} needs base_url and model (or a known preset)")
        return self


class LlmSettings(BaseModel):
    """AI features over OpenAI-compatible providers, tried in order (see docs/decisions.md "LLM")."""

    providers: list[LlmProviderSettings] = Field(default_factory=list)
    # Phone numbers, ID-card numbers and e-mails are replaced before text leaves the process;
    # `mask_patterns` adds an organisation's own (regular expressions).
    mask_personal_data: bool = True
    mask_patterns: list[str] = Field(default_factory=list)
    # A provider that failed this many times in a row is skipped for `breaker_cooldown_seconds`.
    breaker_failures: int = Field(default=3, ge=1)
    breaker_cooldown_seconds: float = Field(default=60.0, gt=0)
    # Features, each switchable. Triage: off, suggest (stored for agents) or apply (written to
    # the ticket where no agent set the field).
    triage: Literal["off", "suggest", "apply"] = "suggest"
    summary: bool = True
    reply_suggestion: bool = True
    assistant: bool = True
    # The QQ assistant hands over to a human after this many answers without resolution.
    assistant_max_turns: int = Field(default=3, ge=1)
    # Questions per QQ user per minute the assistant answers; more get a polite wait.
    assistant_rate_per_minute: int = Field(default=6, ge=1)

    @property
    def enabled(self) -> bool:
        return bool(self.providers)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HELPDESK_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("data")
    database_url: str | None = None
    redis_url: str | None = None
    secret_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    timezone: str = "Asia/Shanghai"
    cors_origins: list[str] = Field(default_factory=list)
    trusted_proxies: list[str] = Field(default_factory=list)
    admin_username: str | None = None
    admin_password: SecretStr | None = None
    # Bearer token for Prometheus scraping `/metrics`; unset: admins' access tokens only.
    metrics_token: SecretStr | None = None
    # Apply migrations when the app starts (every process takes the migration lock).
    auto_migrate: bool = True
    # Requests bodies above this are 413 (uploads have their own limit).
    max_json_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    log_level: str = "INFO"
    log_json: bool = True
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)

    auth: AuthSettings = Field(default_factory=AuthSettings)
    wechat: WeChatSettings = Field(default_factory=WeChatSettings)
    attachments: AttachmentSettings = Field(default_factory=AttachmentSettings)
    tickets: TicketSettings = Field(default_factory=TicketSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    realtime: RealtimeSettings = Field(default_factory=RealtimeSettings)
    onebot: OneBotSettings = Field(default_factory=OneBotSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    sla: SlaSettings = Field(default_factory=SlaSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _production_needs_a_real_secret(self) -> Settings:
        if self.env == "production":
            problem = secret_key_problem(self.secret_key)
            if problem:
                raise ValueError(
                    f"HELPDESK_SECRET_KEY {problem}: production refuses to start without a "
                    f"random key of at least {MIN_SECRET_LENGTH} characters "
                    '(python3 -c "import secrets; print(secrets.token_urlsafe(48))")'
                )
            if self.onebot.inbound and not self.onebot.access_token.get_secret_value().strip():
                raise ValueError(
                    "HELPDESK_ONEBOT__ACCESS_TOKEN is not set: production refuses to serve the OneBot "
                    "endpoints without one (set a token, or HELPDESK_ONEBOT__INBOUND=false)"
                )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'helpdesk.db'}"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def signing_key(self) -> str:
        if self.secret_key is None:
            raise RuntimeError("secret key not resolved: build settings with load_settings()")
        return self.secret_key.get_secret_value()


def secret_key_problem(key: SecretStr | None) -> str | None:
    if key is None:
        return "is not set"
    value = key.get_secret_value()
    if value.strip().lower() in _PLACEHOLDER_SECRETS:
        return "is a placeholder"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def _development_secret(data_dir: Path) -> SecretStr:
    """The key kept under data/: generated on first start so restarts keep sessions valid."""
    path = data_dir / "secret_key"
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        # O_EXCL: of two processes starting together, one writes and both read the same key;
        # the file is private from its first byte.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return SecretStr(_read_key(path))
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return SecretStr(value)


def _read_key(path: Path) -> str:
    # A concurrent writer may not have written yet: wait briefly for the content.
    for _ in range(50):
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: delete it to have a new key generated")


def load_settings(**overrides: object) -> Settings:
    settings = Settings(**overrides)  # type: ignore[arg-type]  # pydantic-settings takes field kwargs
    if settings.secret_key is None and settings.env == "development":
        settings.secret_key = _development_secret(settings.data_dir)
    return settings
