"""Settings: production refuses weak signing keys, development keeps a generated one,
and everything is read from HELPDESK_* environment variables (nested with __)."""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from app.core.config import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No HELPDESK_* variable or .env file of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith("HELPDESK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("secret_key", "problem"),
    [
        pytest.param(None, "is not set", id="missing"),
        pytest.param("changeme", "is a placeholder", id="placeholder"),
        pytest.param(" ChangeMe ", "is a placeholder", id="placeholder-any-case"),
        pytest.param("x" * 31, "is shorter than 32 characters", id="short"),
    ],
)
def test_production_refuses_a_weak_secret_key(tmp_path, secret_key, problem):
    with pytest.raises(ValidationError) as exc_info:
        Settings(_env_file=None, env="production", data_dir=tmp_path, secret_key=secret_key)
    message = str(exc_info.value)
    assert "HELPDESK_SECRET_KEY" in message
    assert problem in message


def test_production_refuses_a_weak_secret_key_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HELPDESK_ENV", "production")
    monkeypatch.setenv("HELPDESK_SECRET_KEY", "changeme")
    with pytest.raises(ValidationError, match="HELPDESK_SECRET_KEY"):
        load_settings(_env_file=None, data_dir=tmp_path)


def test_production_accepts_a_long_random_key_and_generates_nothing(tmp_path):
    key = secrets.token_urlsafe(36)
    assert len(key) == 48

    settings = load_settings(
        _env_file=None, env="production", data_dir=tmp_path, secret_key=key, onebot={"access_token": "t0ken"}
    )

    assert settings.signing_key() == key
    assert not (tmp_path / "secret_key").exists()


def test_production_refuses_open_onebot_endpoints_without_a_token(tmp_path):
    key = secrets.token_urlsafe(36)
    with pytest.raises(ValidationError, match="HELPDESK_ONEBOT__ACCESS_TOKEN"):
        Settings(_env_file=None, env="production", data_dir=tmp_path, secret_key=key)
    with pytest.raises(ValidationError, match="HELPDESK_ONEBOT__ACCESS_TOKEN"):
        Settings(_env_file=None, env="production", data_dir=tmp_path, secret_key=key, onebot={"access_token": "  "})
    closed = Settings(_env_file=None, env="production", data_dir=tmp_path, secret_key=key, onebot={"inbound": False})
    assert not closed.onebot.inbound


def test_development_generates_a_private_key_once_and_keeps_it(tmp_path):
    first = load_settings(data_dir=tmp_path, _env_file=None)

    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = first.signing_key()
    assert len(key) >= 32
    assert key_file.read_text(encoding="utf-8").strip() == key

    second = load_settings(data_dir=tmp_path, _env_file=None)
    assert second.signing_key() == key


def test_development_creates_the_data_directory_for_its_key(tmp_path):
    data_dir = tmp_path / "not" / "yet"

    settings = load_settings(data_dir=data_dir, _env_file=None)

    assert (data_dir / "secret_key").read_text(encoding="utf-8").strip() == settings.signing_key()


def test_settings_come_from_prefixed_and_nested_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("HELPDESK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HELPDESK_PORT", "9001")
    monkeypatch.setenv("HELPDESK_AUTH__REGISTRATION_OPEN", "false")
    monkeypatch.setenv("HELPDESK_WECHAT__APP_ID", "wx1")
    monkeypatch.setenv("HELPDESK_WECHAT__SECRET", "wechat-app-secret-value")
    monkeypatch.setenv("HELPDESK_CORS_ORIGINS", '["https://a.example"]')
    monkeypatch.setenv("PORT", "1")  # unprefixed variables are not ours

    settings = load_settings(_env_file=None)

    assert settings.data_dir == tmp_path
    assert settings.port == 9001
    assert settings.auth.registration_open is False
    assert settings.auth.argon2_time_cost == 3  # siblings of a nested variable keep their defaults
    assert settings.wechat.app_id == "wx1"
    assert settings.wechat.enabled
    assert settings.cors_origins == ["https://a.example"]
    assert "wechat-app-secret-value" not in repr(settings)


def test_dotenv_in_the_working_directory_is_read_and_the_environment_wins(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text(
        f"HELPDESK_DATA_DIR={tmp_path}\nHELPDESK_PORT=9002\nHELPDESK_WECHAT__APP_ID=wx-from-dotenv\n", encoding="utf-8"
    )
    monkeypatch.setenv("HELPDESK_PORT", "9003")

    settings = load_settings()

    assert settings.wechat.app_id == "wx-from-dotenv"
    assert settings.port == 9003


def setting_names() -> set[str]:
    """Every environment variable the settings read: HELPDESK_X, and HELPDESK_GROUP__X for the
    nested groups (a list of models, like the LLM providers, is one JSON variable)."""
    names = set()
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            names |= {f"HELPDESK_{name}__{sub}".upper() for sub in group.model_fields}
        else:
            names.add(f"HELPDESK_{name}".upper())
    return names


def test_env_example_documents_every_setting_and_only_real_ones() -> None:
    example = (Path(__file__).parents[2] / ".env.example").read_text(encoding="utf-8")
    mentioned = set(re.findall(r"^#?\s*(HELPDESK_[A-Z0-9_]+)=", example, flags=re.MULTILINE))

    assert setting_names() - mentioned == set()
    assert mentioned - setting_names() == set()


def test_env_example_is_a_valid_env_file(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no data/ written next to the checkout
    settings = Settings(_env_file=Path(__file__).parents[2] / ".env.example")  # type: ignore[call-arg]

    assert settings.env == "development"
    assert settings.llm.triage == "suggest"
    assert not settings.llm.enabled
