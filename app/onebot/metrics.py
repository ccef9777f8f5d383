"""Counters for the later `/metrics` endpoint: plain numbers the library bumps, no dependency.

Names: `frames_in`, `frames_out`, `frames_invalid`, `events_in`, `events_unparsable`,
`events_duplicate`, `events_dropped`, `handler_errors`, `responses_unmatched`,
`actions_failed`, `actions_timeout`, `actions_lost`, `connects`, `reconnects`, `replaced`.
Each counter may carry one label (a bot's self_id, a forward URL). Gauges (open connections,
pending calls) are read from the registry and the request manager when scraped.
"""

from __future__ import annotations

from collections import Counter


class Metrics:
    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def inc(self, name: str, label: str | int = "", amount: int = 1) -> None:
        self._counts[(name, str(label))] += amount

    def get(self, name: str, label: str | int | None = None) -> int:
        """One label's count, or the sum over labels when `label` is None."""
        if label is not None:
            return self._counts[(name, str(label))]
        return sum(count for (key, _), count in self._counts.items() if key == name)

    def snapshot(self) -> dict[tuple[str, str], int]:
        return dict(self._counts)
