"""Checks on inbound links (reverse WebSocket, HTTP POST events).

Tokens come as `Authorization: Bearer <t>` (the spec, NapCat — which sends `Bearer ` even with
no token), `Authorization: Token <t>` (go-cqhttp) or `?access_token=<t>`. An empty token is no
token. Secrets are compared in constant time. With no token configured only loopback peers are
let in: an open endpoint would let anyone forge events or take over a bot's connection.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

_SCHEMES = ("bearer", "token")


def presented_token(authorization: str | None, query_token: str | None = None) -> str | None:
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() in _SCHEMES and value.strip():
            return value.strip()
        if scheme.lower() not in _SCHEMES and scheme and not value:
            return scheme  # a bare token without a scheme
    if query_token:
        return query_token
    return None


def token_matches(expected: str, presented: str | None) -> bool:
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def inbound_refusal(
    *, expected_token: str, authorization: str | None, query_token: str | None, peer: str | None
) -> int:
    """0 when the peer may connect, else the HTTP status to refuse with (401 no token, 403 wrong)."""
    if not expected_token:
        return 0 if is_loopback(peer) else 403
    presented = presented_token(authorization, query_token)
    if presented is None:
        return 401
    return 0 if token_matches(expected_token, presented) else 403


def signature(secret: str, body: bytes) -> str:
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Signature: sha1=<hex HMAC-SHA1(secret, raw body)>`, compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.strip().lower().encode())
