"""HTTP POST events: the implementation posts each event to our endpoint (`/onebot/v11/http`).

Headers as go-cqhttp sends them: `Content-Type: application/json`, `X-Self-ID`, `User-Agent`,
and with a secret `X-Signature: sha1=<hex HMAC-SHA1(secret, raw body)>`. Neither go-cqhttp nor
NapCat sends `Authorization` on these posts (NapCat signs with its access token as the secret):
the sender adds `Authorization: <scheme> <impl.token>` by default (`authorization=True`), pass
`authorization=False` to post exactly as they do. go-cqhttp re-posts an event when a
post fails at the transport level (a timeout, a reset), so one event can arrive twice:
`post(event, repeat=2)`.
"""

from __future__ import annotations

import hmac
from types import TracebackType
from typing import Any

import httpx

from tests.onebot_sim.implementation import Implementation, encode


def sign(secret: str, body: bytes) -> str:
    """The X-Signature value for `body`."""
    return "sha1=" + hmac.new(secret.encode(), body, "sha1").hexdigest()


class HttpPostSender:
    """The HTTP POST target of `impl`: while open, `impl.emit` posts every event here too.
    `responses` holds every response received, `errors` every transport error."""

    def __init__(
        self,
        impl: Implementation,
        url: str,
        *,
        secret: str | None = None,
        authorization: bool = True,
        timeout: float = 5.0,
    ) -> None:
        self.impl = impl
        self.url = url
        self.secret = secret
        self.authorization = authorization
        self.responses: list[httpx.Response] = []
        self.errors: list[httpx.HTTPError] = []
        self._client = httpx.AsyncClient(timeout=timeout, trust_env=False)
        impl.attach(self)

    def headers(self, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "X-Self-ID": str(self.impl.self_id),
            "User-Agent": self.impl.quirks.user_agent,
        }
        if self.authorization and self.impl.token:
            headers["Authorization"] = f"{self.impl.quirks.auth_scheme} {self.impl.token}"
        if self.secret:
            headers["X-Signature"] = sign(self.secret, body)
        return headers

    async def post(
        self,
        event: dict[str, Any] | None = None,
        *,
        repeat: int = 1,
        body: bytes | str | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Post `event` (or the raw `body`, e.g. text that is not JSON) `repeat` times; returns
        the last response. `signature` replaces the X-Signature header ("" leaves it out, to send
        an unsigned body); `headers` are added last."""
        raw = body.encode() if isinstance(body, str) else body
        if raw is None:
            raw = encode(event or {}).encode()
        sent = self.headers(raw)
        if signature is not None:
            sent.pop("X-Signature", None)
            if signature:
                sent["X-Signature"] = signature
        sent |= headers or {}
        response = None
        for _ in range(repeat):
            response = await self._client.post(self.url, content=raw, headers=sent)
            self.responses.append(response)
        assert response is not None, "repeat must be at least 1"
        return response

    async def deliver(self, text: str) -> bool:
        try:
            response = await self.post(body=text)
        except httpx.HTTPError as exc:
            self.errors.append(exc)  # the implementations log and drop the event
            return False
        return response.is_success

    async def close(self) -> None:
        self.impl.detach(self)
        await self._client.aclose()

    async def __aenter__(self) -> HttpPostSender:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
