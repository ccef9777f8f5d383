"""Images sent with `/报修`: downloaded from the segment's URL (QQ's CDN links expire, so
promptly, in a job) with a size limit and a timeout, then stored as the ticket's attachments."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.onebot.message import MessageSegment


class DownloadFailed(Exception):
    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


def image_source(segment: MessageSegment) -> tuple[str | None, str]:
    """(URL, file name) of an image segment: NapCat and go-cqhttp put the link in `url`; some
    implementations only give `file` as a URL."""
    data: dict[str, Any] = segment.data
    url = data.get("url") or data.get("file")
    url = url if isinstance(url, str) and urlsplit(url).scheme in ("http", "https") else None
    name = data.get("file") if isinstance(data.get("file"), str) and "/" not in data["file"] else "image"
    return url, str(name)[:200]


async def download(http: httpx.AsyncClient, url: str, *, max_bytes: int, seconds: float) -> bytes:
    """The body, or DownloadFailed: permanent for a refusal or an oversized file, transient for
    a network problem or a server error (the job retries those)."""
    try:
        async with asyncio.timeout(seconds):
            async with http.stream("GET", url, timeout=seconds, follow_redirects=True) as response:
                if response.status_code >= 400:
                    raise DownloadFailed(f"HTTP {response.status_code}", permanent=response.status_code < 500)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise DownloadFailed(f"larger than {max_bytes} bytes", permanent=True)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadFailed(f"larger than {max_bytes} bytes", permanent=True)
                    chunks.append(chunk)
    except TimeoutError:
        raise DownloadFailed(f"no complete answer within {seconds:g} s", permanent=False) from None
    except httpx.HTTPError as exc:
        raise DownloadFailed(f"download failed: {type(exc).__name__}", permanent=False) from None
    return b"".join(chunks)
