"""Serve an ASGI app with uvicorn on 127.0.0.1, an ephemeral port, in the current event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Yields the base URL (`http://127.0.0.1:<port>`) while the app serves real HTTP."""
    # log_config=None: leave the test's logging alone; no access log (the peer's logs are not ours).
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        # uvicorn has no "started" event to await; poll its flag, failing fast if serve() died.
        async with asyncio.timeout(10):
            while not server.started:  # no event to await, see above
                if task.done():
                    task.result()
                    raise RuntimeError("the local server stopped before it started")
                await asyncio.sleep(0.005)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
