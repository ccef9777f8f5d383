"""The admins' LLM usage report (`GET /llm/usage`): calls, failures, tokens and latency of the
`llm_calls` rows in a window, per business day, per feature or per provider.

The window follows the statistics (app/services/stats.py): `from`/`to` as business days or
RFC 3339 datetimes, default the last 30 days, at most 366 (422 `range_too_long`); days are
counted in HELPDESK_TIMEZONE with bounds computed in Python. The figures are SQL sums and
counts (app/crud/crud_llm.py), the average divided here, so both databases agree exactly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.crud import crud_llm
from app.schemas.ai import LlmUsageFigures, LlmUsageGroup, LlmUsageReport
from app.schemas.stats import StatsRange
from app.services import stats

GroupBy = Literal["day", "feature", "provider"]


def _figures(row: Any) -> dict[str, Any]:
    calls = int(row.calls)
    return {
        "calls": calls,
        "failures": int(row.failures),
        "prompt_tokens": int(row.prompt_tokens),
        "completion_tokens": int(row.completion_tokens),
        "avg_latency_ms": round(int(row.latency_ms) / calls, 1) if calls else None,
    }


async def report(
    session: AsyncSession,
    *,
    from_raw: str | None,
    to_raw: str | None,
    group_by: GroupBy,
    tz: ZoneInfo,
    now: datetime,
) -> LlmUsageReport:
    start, end = stats.window(stats.parse_bound(from_raw, "from"), stats.parse_bound(to_raw, "to"), tz=tz, now=now)
    if group_by == "day":
        bounds = stats.days(start, end, tz)
        rows = await crud_llm.usage_per_day(session, [(lo, hi) for _, lo, hi in bounds])
        groups = [
            LlmUsageGroup(key=day.isoformat(), **_figures(row)) for (day, _, _), row in zip(bounds, rows, strict=True)
        ]
    else:
        rows = await crud_llm.usage_by(session, start, end, by=group_by)
        groups = [LlmUsageGroup(key=str(row.key), **_figures(row)) for row in rows]
    total = LlmUsageFigures(**_figures(await crud_llm.usage_total(session, start, end)))
    return LlmUsageReport(
        range=StatsRange(from_=start, to=end, timezone=tz.key), group_by=group_by, groups=groups, total=total
    )
