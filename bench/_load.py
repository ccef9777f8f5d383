"""A closed-loop HTTP/1.1 load generator: N keep-alive connections on raw asyncio streams, each
sending its next request as soon as it has read the previous answer. Raw sockets and uvloop
keep the client's own cost per request far below the server's, so the server is what is measured
(httpx costs about as much per request as a bare FastAPI endpoint)."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import uvloop


@dataclass(frozen=True, order=True)
class Result:
    rate: float  # answered requests per second (first field: results order by it)
    p50_ms: float = field(compare=False)
    p99_ms: float = field(compare=False)
    failures: int = field(compare=False)  # answers that were not 2xx


def run_load(
    base_url: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    body: bytes | None,
    connections: int,
    seconds: float,
    warmup: float = 0.5,
) -> Result:
    """Load one target for `seconds` (after `warmup`) and measure it."""
    request = encode_request(base_url, method, path, headers, body)
    host, port = _address(base_url)
    return uvloop.run(_load(host, port, request, connections, seconds, warmup))


def encode_request(base_url: str, method: str, path: str, headers: dict[str, str], body: bytes | None) -> bytes:
    host, port = _address(base_url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def _address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def _load(host: str, port: int, request: bytes, connections: int, seconds: float, warmup: float) -> Result:
    latencies: list[float] = []
    failures = 0
    measuring = False
    stop = False

    async def connection() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not stop:
                started = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                if measuring:
                    latencies.append(time.perf_counter() - started)
                    failures += not 200 <= status < 300
        finally:
            writer.close()

    tasks = [asyncio.create_task(connection()) for _ in range(connections)]
    await asyncio.sleep(warmup)
    measuring = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed = time.perf_counter() - started
    stop = True
    await asyncio.gather(*tasks)
    latencies.sort()
    return Result(
        rate=len(latencies) / elapsed,
        p50_ms=1000 * statistics.median(latencies) if latencies else 0.0,
        p99_ms=1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0,
        failures=failures,
    )


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Reads one response (Content-Length or chunked); returns its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    fields = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if "content-length" in fields:
        await reader.readexactly(int(fields["content-length"]))
    elif fields.get("transfer-encoding", "").lower() == "chunked":
        await _read_chunked(reader)
    return status


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return
