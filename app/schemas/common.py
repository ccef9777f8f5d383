"""Building blocks shared by request and response schemas."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Generic, TypeVar

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

# C0/C1 control characters except tab and newlines, plus bidi overrides that disguise text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean_text(value: str) -> str:
    value = _CONTROL.sub("", value).strip()
    if not value:
        raise PydanticCustomError("blank", "must not be blank")
    return value


def clean_line(value: str) -> str:
    """One-line text: newlines and tabs become spaces."""
    return clean_text(re.sub(r"[\t\r\n]+", " ", value))


def _email(value: str) -> str:
    try:
        return str(validate_email(value.strip(), check_deliverability=False).normalized)
    except EmailNotValidError:
        raise PydanticCustomError("invalid_email", "not a valid email address") from None


Line = Annotated[str, AfterValidator(clean_line)]
Email = Annotated[str, Field(max_length=254), AfterValidator(_email)]

_USERNAME = re.compile(r"^[\w.\-]+$")  # \w is Unicode-aware: 汉字 are letters here


def normalize_username(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().casefold()


def _username(value: str) -> str:
    value = normalize_username(value)
    if not _USERNAME.match(value):
        raise PydanticCustomError("invalid_username", "invalid username")
    return value


Username = Annotated[str, Field(min_length=3, max_length=32), AfterValidator(_username)]
Password = Annotated[str, Field(min_length=8, max_length=128)]
DisplayName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(clean_line)]


class RequestModel(BaseModel):
    """Request bodies refuse unknown fields (a typo should not be silently dropped)."""

    model_config = ConfigDict(extra="forbid")


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
