"""Prometheus metrics for `GET /metrics`: one registry per app (never the global default, so
several apps in one process, as in the tests, do not collide).

- HTTP latency is observed by `HttpMetricsMiddleware`, labelled with the route template.
- LLM attempts are observed on the usage path (`observe_llm`), once per provider attempt.
- Everything else is read when scraped, with no bookkeeping of its own: the job queue in one
  aggregate query, the OneBot hub's counters, connections and pending calls, the realtime bus's
  open streams.

Job figures come from the shared database, so every API process reports the whole queue
(aggregate them with `max`, not `sum`); the others are per process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.crud import crud_job
from app.db.base import utcnow
from app.models.job import JobStatus

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from app.db.session import Database
    from app.llm.client import Attempt
    from app.onebot.hub import OneBotHub
    from app.realtime.bus import EventBus

log = logging.getLogger(__name__)

UNMATCHED_ROUTE = "unmatched"  # no route matched (404): never the raw path
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LLM_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
# A scrape must answer well inside Prometheus' own timeout (10 s by default) even when the
# database does not: the job figures are then left out and `..._scrape_success` says so.
JOB_QUERY_TIMEOUT = 5.0
# OneBot counters carry a bot's self_id, except those of a forward link, which carry its URL.
_ONEBOT_LABEL = {"reconnects": "url"}


class AppMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_duration = Histogram(
            "helpdesk_http_request_duration_seconds",
            "Time to the response's first byte by method, route template and status class "
            "(for SSE streams: the time to open the stream).",
            ["method", "route", "status"],
            buckets=_HTTP_BUCKETS,
            registry=self.registry,
        )
        self.llm_calls = Counter(
            "helpdesk_llm_calls",
            "LLM provider attempts by provider, feature and outcome (ok, timeout, server_error, ...).",
            ["provider", "feature", "outcome"],
            registry=self.registry,
        )
        self.llm_duration = Histogram(
            "helpdesk_llm_call_duration_seconds",
            "Duration of LLM provider attempts.",
            ["provider"],
            buckets=_LLM_BUCKETS,
            registry=self.registry,
        )
        self.llm_tokens = Counter(
            "helpdesk_llm_tokens",
            "Tokens the providers reported, by direction (prompt = in, completion = out).",
            ["provider", "direction"],
            registry=self.registry,
        )
        self.live = LiveCollector()
        self.registry.register(self.live)

    def observe_llm(self, attempt: Attempt) -> None:
        """One provider attempt (the LLM client's usage sink calls this for each)."""
        self.llm_calls.labels(attempt.provider, attempt.feature, attempt.outcome.value).inc()
        self.llm_duration.labels(attempt.provider).observe(attempt.latency_ms / 1000)
        if attempt.prompt_tokens:
            self.llm_tokens.labels(attempt.provider, "prompt").inc(attempt.prompt_tokens)
        if attempt.completion_tokens:
            self.llm_tokens.labels(attempt.provider, "completion").inc(attempt.completion_tokens)

    async def render(self, db: Database) -> bytes:
        """The text exposition format. The job query runs first; no await separates its result
        from the synchronous rendering, so concurrent scrapes cannot mix their figures."""
        await self.live.refresh_jobs(db)
        return generate_latest(self.registry)


class LiveCollector(Collector):
    """Figures read when scraped from the objects that already keep them."""

    def __init__(self) -> None:
        self.onebot: OneBotHub | None = None
        self.realtime: EventBus | None = None
        self._jobs: list[tuple[str, JobStatus, int, float | None]] | None = None

    async def refresh_jobs(self, db: Database) -> None:
        try:
            async with asyncio.timeout(JOB_QUERY_TIMEOUT), db.transaction(write=False) as session:
                rows = await crud_job.queue_summary(session)
        except Exception as exc:  # a scrape reports the outage instead of failing
            log.warning("metrics: job queue query failed: %s", type(exc).__name__)
            self._jobs = None
            return
        now = utcnow()
        self._jobs = [
            (kind, status, count, None if oldest is None else max(0.0, (now - oldest).total_seconds()))
            for kind, status, count, oldest in rows
        ]

    def collect(self) -> Iterator[Metric]:
        yield from self._collect_jobs()
        if self.onebot is not None:
            yield from _collect_onebot(self.onebot)
        if self.realtime is not None:
            streams = GaugeMetricFamily("helpdesk_realtime_connections", "Open SSE and WebSocket streams.")
            streams.add_metric([], self.realtime.connections)
            yield streams

    def _collect_jobs(self) -> Iterable[Metric]:
        success = GaugeMetricFamily(
            "helpdesk_job_queue_scrape_success", "1 if the job queue could be read for this scrape, else 0."
        )
        success.add_metric([], 0 if self._jobs is None else 1)
        yield success
        if self._jobs is None:
            return
        depth = GaugeMetricFamily(
            "helpdesk_job_queue_depth", "Jobs waiting (pending) or being run (running).", labels=["kind", "status"]
        )
        age = GaugeMetricFamily(
            "helpdesk_job_queue_oldest_age_seconds",
            "Seconds since the oldest pending or running job of a kind became due (0 if none is due yet).",
            labels=["kind", "status"],
        )
        dead = GaugeMetricFamily("helpdesk_jobs_dead", "Jobs that gave up after their last attempt.", labels=["kind"])
        failed = GaugeMetricFamily(
            "helpdesk_jobs_failed", "Jobs that failed permanently (retrying could not help).", labels=["kind"]
        )
        for kind, status, count, oldest_age in self._jobs:
            if status in (JobStatus.pending, JobStatus.running):
                depth.add_metric([kind, status.value], count)
                age.add_metric([kind, status.value], oldest_age or 0.0)
            elif status is JobStatus.dead:
                dead.add_metric([kind], count)
            elif status is JobStatus.failed:
                failed.add_metric([kind], count)
        yield from (depth, age, dead, failed)


def _collect_onebot(hub: OneBotHub) -> Iterable[Metric]:
    connections = GaugeMetricFamily(
        "helpdesk_onebot_connections",
        "Open OneBot connections per bot, role and transport.",
        labels=["self_id", "role", "transport"],
    )
    open_links = Tally((str(c.self_id), c.role.value, c.transport) for c in hub.registry.connections() if not c.closed)
    for labels, count in sorted(open_links.items()):
        connections.add_metric(list(labels), count)
    yield connections
    pending = GaugeMetricFamily("helpdesk_onebot_pending_calls", "OneBot API calls waiting for their answer.")
    pending.add_metric([], hub.requests.pending_count)
    yield pending
    families: dict[str, CounterMetricFamily] = {}
    for (name, label), count in sorted(hub.metrics.snapshot().items()):
        family = families.get(name)
        if family is None:
            family = families[name] = CounterMetricFamily(
                f"helpdesk_onebot_{name}",
                f"OneBot counter {name!r} (see app/onebot/metrics.py).",
                labels=[_ONEBOT_LABEL.get(name, "self_id")],
            )
        family.add_metric([label], count)
    yield from families.values()


class HttpMetricsMiddleware:
    """Observes each HTTP request's latency to its response start, labelled with the matched
    route's template (`/api/v1/tickets/{ticket_id}`), never the raw path. It sits innermost,
    next to the router, so it sees the route the router stores in the scope. WebSocket scopes
    pass untouched; an SSE stream counts the time to open it, not its lifetime."""

    def __init__(self, app: ASGIApp, *, metrics: AppMetrics) -> None:
        self.app = app
        self.histogram = metrics.http_duration
        self._children: dict[tuple[str, str, str], Histogram] = {}
        self._templates: dict[int, str] | None = None  # built on the first request: routes are final

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        observed = False

        async def send_observed(message: Message) -> None:
            nonlocal observed
            if message["type"] == "http.response.start" and not observed:
                observed = True
                self._observe(scope, message["status"], time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            if not observed:  # the outer middleware turns it into a 500
                self._observe(scope, 500, time.perf_counter() - started)
            raise

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope.get("method", "")
        key = (method if method in _METHODS else "other", self._template(scope), f"{status // 100}xx")
        child = self._children.get(key)
        if child is None:  # label sets are few (routes x methods x classes): resolve each once
            child = self._children[key] = self.histogram.labels(*key)
        child.observe(seconds)

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return UNMATCHED_ROUTE
        if self._templates is None:
            self._templates = route_templates(getattr(scope.get("app"), "routes", []))
        return self._templates.get(id(route)) or getattr(route, "path_format", None) or UNMATCHED_ROUTE


def route_templates(routes: list[BaseRoute]) -> dict[int, str]:
    """Full path templates by route object. FastAPI includes routers lazily: the route it
    stores in the scope is the router's own, whose `path_format` lacks the include prefix
    (`/tickets/{ticket_id}`); `iter_route_contexts` walks the inclusions with their prefixes."""
    templates: dict[int, str] = {}
    for context in iter_route_contexts(routes):
        if context.path_format:
            templates.setdefault(id(context.original_route), context.path_format)
    return templates
