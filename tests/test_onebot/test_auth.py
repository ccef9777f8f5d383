"""Inbound checks: token schemes, constant-time comparisons, the signature, loopback-only."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from app.onebot.auth import inbound_refusal, is_loopback, presented_token, signature_matches


@pytest.mark.parametrize(
    ("authorization", "query", "expected"),
    [
        ("Bearer s3cret", None, "s3cret"),
        ("Token s3cret", None, "s3cret"),  # go-cqhttp
        ("bearer s3cret", None, "s3cret"),
        ("Bearer ", None, None),  # NapCat with no token: an empty token is none
        ("Bearer ", "s3cret", "s3cret"),
        (None, "s3cret", "s3cret"),
        (None, None, None),
    ],
)
def test_presented_token_accepts_both_schemes_and_the_query(
    authorization: str | None, query: str | None, expected: str | None
) -> None:
    assert presented_token(authorization, query) == expected


def test_a_missing_token_is_401_and_a_wrong_one_403() -> None:
    assert inbound_refusal(expected_token="s3cret", authorization=None, query_token=None, peer="127.0.0.1") == 401
    assert inbound_refusal(expected_token="s3cret", authorization="Bearer nope", query_token=None, peer="::1") == 403
    assert inbound_refusal(expected_token="s3cret", authorization="Token s3cret", query_token=None, peer="8.8.8.8") == 0


def test_without_a_token_only_loopback_peers_are_let_in() -> None:
    assert inbound_refusal(expected_token="", authorization=None, query_token=None, peer="127.0.0.1") == 0
    assert inbound_refusal(expected_token="", authorization=None, query_token=None, peer="::1") == 0
    assert inbound_refusal(expected_token="", authorization="Bearer x", query_token=None, peer="203.0.113.9") == 403
    assert inbound_refusal(expected_token="", authorization=None, query_token=None, peer=None) == 403


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.5")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("not-an-ip")


def test_signature_is_hmac_sha1_over_the_raw_body() -> None:
    body = '{"post_type":"message","message":"你好"}'.encode()
    good = "sha1=" + hmac.new(b"secret", body, hashlib.sha1).hexdigest()
    assert signature_matches("secret", body, good)
    assert signature_matches("secret", body, good.upper().replace("SHA1=", "sha1="))


@pytest.mark.parametrize(
    "header",
    [None, "", "sha1=", "sha1=" + "0" * 40, "md5=abc", "sha1=" + hmac.new(b"other", b"{}", hashlib.sha1).hexdigest()],
)
def test_forged_or_missing_signatures_are_rejected(header: str | None) -> None:
    assert not signature_matches("secret", b"{}", header)
