"""Action response frames in the shape each real implementation sends.

NapCat (`OB11Response`): `{status, retcode, data, message, wording, echo, stream}`; `stream` is
"normal-action", or "stream-action" on every frame of a stream action. Failures use 1404 (unknown
action), 1400 (bad parameters) and 1200 (anything else) over WebSocket, but 200 / 400 / 200 over
HTTP. The echo is always present (null when the request had none).

go-cqhttp (`coolq.OK` / `coolq.Failed`): `{data, retcode, status, message}` and on failure also
`msg` (an upper-case code such as "API_NOT_FOUND") and `wording`; 404 for an unknown action
(1404 before v1.0), 100 for bad parameters and most failures. The echo is copied only when the
request had one.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from tests.onebot_sim.quirks import Flavor, Quirks

FailureKind = Literal["unknown", "bad_params", "failed"]


class _NoEcho:
    def __repr__(self) -> str:
        return "NO_ECHO"


NO_ECHO: Any = _NoEcho()
"""The request carried no `echo` key (distinct from `"echo": null`)."""

_RETCODES: dict[tuple[Flavor, bool], dict[FailureKind, int]] = {
    ("napcat", False): {"unknown": 1404, "bad_params": 1400, "failed": 1200},
    ("napcat", True): {"unknown": 200, "bad_params": 400, "failed": 200},
    ("gocq", False): {"unknown": 404, "bad_params": 100, "failed": 100},
    ("gocq", True): {"unknown": 404, "bad_params": 100, "failed": 100},
}


class ActionFailure(Exception):
    """Raised by an action handler; becomes a `status: failed` frame in the flavor's shape."""

    def __init__(self, kind: FailureKind, wording: str, *, code: str = "", retcode: int | None = None) -> None:
        super().__init__(wording)
        self.kind = kind
        self.wording = wording
        self.code = code or kind.upper()  # go-cqhttp's `msg`, e.g. "API_NOT_FOUND"
        self.retcode = retcode


def retcode(kind: FailureKind, quirks: Quirks, *, over_http: bool) -> int:
    return _RETCODES[(quirks.flavor, over_http)][kind]


def _echo_value(echo: Any, quirks: Quirks) -> Any:
    if not quirks.stringify_echo or isinstance(echo, str):
        return echo
    return json.dumps(echo, ensure_ascii=False, separators=(",", ":"))


def _add_echo(frame: dict[str, Any], echo: Any, quirks: Quirks) -> dict[str, Any]:
    if echo is NO_ECHO:
        if quirks.flavor == "napcat" and not quirks.drop_falsy_echo:
            frame["echo"] = None
        return frame
    if quirks.drop_falsy_echo and not echo:
        return frame
    frame["echo"] = _echo_value(echo, quirks)
    return frame


def ok(data: Any, echo: Any, quirks: Quirks, *, stream: bool = False) -> dict[str, Any]:
    if quirks.flavor == "gocq":
        frame: dict[str, Any] = {"data": data, "retcode": 0, "status": "ok", "message": ""}
    else:
        frame = {"status": "ok", "retcode": 0, "data": data, "message": "", "wording": ""}
        frame["stream"] = "stream-action" if stream else "normal-action"
    return _add_echo(frame, echo, quirks)


def failed(failure: ActionFailure, echo: Any, quirks: Quirks, *, over_http: bool) -> dict[str, Any]:
    code = failure.retcode if failure.retcode is not None else retcode(failure.kind, quirks, over_http=over_http)
    if quirks.flavor == "gocq":
        frame: dict[str, Any] = {
            "data": None,
            "retcode": code,
            "msg": failure.code,
            "wording": failure.wording,
            "message": failure.wording,
            "status": "failed",
        }
    else:
        frame = {"status": "failed", "retcode": code, "data": None, "message": failure.wording}
        frame |= {"wording": failure.wording, "stream": "normal-action"}
    return _add_echo(frame, echo, quirks)


def unknown_action(action: str, quirks: Quirks) -> ActionFailure:
    if quirks.flavor == "gocq":
        return ActionFailure("unknown", "API不存在", code="API_NOT_FOUND")
    return ActionFailure("unknown", f"不支持的API {action}")
