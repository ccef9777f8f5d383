"""The reliability suite (issue 9): load and faults against the real service, bounded in time so
that CI runs it on every submission. `make soak` sets HELPDESK_SOAK=1 and the same scenarios run
at soak scale (`scaled`)."""

from __future__ import annotations

import os

SOAK = os.environ.get("HELPDESK_SOAK", "").strip() not in ("", "0")


def scaled(ci: int, soak: int) -> int:
    """The size of a scenario: `ci` on every run, `soak` under `make soak`."""
    return soak if SOAK else ci
