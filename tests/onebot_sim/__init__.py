"""A OneBot v11 implementation simulator: plays NapCat / go-cqhttp over real sockets on 127.0.0.1.

It speaks raw JSON and imports nothing from `app/`, so the client library is tested against the
wire protocol and the quirks of real implementations, not against its own assumptions.

Public API
----------

`Quirks` (dataclass; `Quirks.napcat(**overrides)`, `Quirks.gocq(**overrides)` for the bundles)::

    message_format: "array" | "string" = "array"   # `message` in events and get_msg
    auth_scheme: "Bearer" | "Token" = "Bearer"     # what it SENDS (reverse WS, HTTP POST)
    flavor: "napcat" | "gocq" = "napcat"           # response shape, retcodes, message ids, extras
    lifecycle: bool = True                         # lifecycle/connect on event links
    heartbeat_interval: float | None = None        # seconds; the event's `interval` is in ms
    reply_delay: float = 0.0                       # seconds before each answer
    reply_twice: bool = False                      # every answer twice (duplicate echo)
    stringify_echo: bool = False                   # echo back as a string
    drop_falsy_echo: bool = False                  # no `echo` key when the echo was falsy
    empty_bearer: bool = False                     # reverse WS sends "Bearer " with no token
    friends_only: bool = True                      # send_private_msg to a non-friend fails
    ids_as_strings: bool = False                   # self_id/user_id/group_id/... as strings
    report_self_message: bool = False              # emit message_sent after each send
    auth_rejection: "http" | "frame" = "http"      # forward WS bad token: 401/403, or NapCat's
                                                   # 1403 frame + close after the upgrade

Flavors: napcat answers `{status, retcode, data, message, wording, echo, stream}` with retcodes
1404 (unknown action) / 1400 (bad params) / 1200 (other) over WebSocket and 200 / 400 / 200 over
HTTP; message ids start at 3425462029 and grow; events carry message_seq, real_id, font 14,
message_format (and group_name). gocq answers `{data, retcode, status, message}` (+ `msg`,
`wording` on failure) with 404 / 100 / 100, copies the echo only when sent, strips `_async`,
and issues negative message ids from -726405240 down; `get_file` and `test_download_stream`
are NapCat-only.

`Implementation(self_id=123456789, nickname="工单助手", quirks=Quirks(), token="",
friends=set(), nicknames={}, groups={}, online=True, history_limit=5000)`:

- records: `calls` (`{"action", "params", "over_http"[, "echo"]}`), `sent` (`{"action",
  "message_type", "user_id", "group_id", "message", "segments", "text", "message_id"}`),
  `bad_frames`, `messages` (history for get_msg), `files`, `requests` (friend request flags).
- `handle_action(action, params, echo=NO_ECHO, *, over_http=False) -> list[dict]`, and
  `await respond(...)` (the same after `reply_delay`). Actions: get_login_info, get_status,
  get_version_info, get_friend_list, send_private_msg, send_group_msg, send_msg, delete_msg,
  get_msg, get_stranger_info, get_group_info, get_group_member_info, set_friend_add_request,
  get_image, get_file, test_download_stream (params `chunks`, default 3: that many
  `{"type": "stream", "data_type": "data_chunk", "data", "index"}` frames then
  `{"type": "response", "data_type": "file_complete", "total_chunks"}`, all with the echo and
  `"stream": "stream-action"`). `message` may be a CQ string, an array or one segment.
- scripting: `drop_next(action, *, close_code=None)` (abort the link instead of answering, or
  close it with `close_code`; over HTTP the response is cut off), `silence(action)` /
  `unsilence(action)`, `fail_next(action, retcode=None, wording="操作失败")`,
  `delay_next(action, seconds)` (answered late, others meanwhile),
  `add_file(file, *, url=None, size=2048, name=None)`.
- events (dicts in the configured shape; a str message is the user's literal text):
  `private_message(user_id, message, *, message_id=None, nickname=None, sub_type="friend",
  at=None)`, `group_message(group_id, user_id, message, *, message_id=None, nickname=None,
  card="", role="member", at=None)`, `message_sent(message, *, user_id=None, group_id=None,
  message_id=None)`, `friend_request(user_id, flag=None, comment="")`,
  `group_increase(group_id, user_id, *, operator_id=None, sub_type="approve")`, `heartbeat()`,
  `lifecycle_connect()`. `at` overrides `time`.
- `await emit(event) -> int`: sends to every event link (forward WS on `/` or `/event`,
  reverse WS with role Universal/Event/None, open `HttpPostSender`s); returns how many took it.
- waiting: `await wait_for_call(action, *, count=1, timeout=5.0) -> dict`,
  `await wait_for_sent(count=1, *, timeout=5.0) -> dict`, `event_links`, and `changed`
  (a `Signal`: `await impl.changed.wait_for(predicate, timeout)`).

Transports:

- `async with forward_ws_server(impl, *, port=0) as server` → `ForwardServer`: `.url`
  (`ws://127.0.0.1:<port>/`; also `/api`, `/event`), `.handshakes` (`Handshake(path, headers,
  status)`), `.connections`, `.connection_count`, `await .wait_connected(n=1, timeout=5)`,
  `await .wait_disconnected(timeout=5)`, `await .drop_all()`, `await .stop(*, abort=True)`,
  `await .start()` (same port). With `impl.token` it wants `Authorization: Bearer|Token <t>`
  or `?access_token=<t>`: 401 missing, 403 wrong (or the NapCat 1403 frame, see quirks).
- `ReverseWsClient(impl, url, *, role="Universal"|"API"|"Event"|None, token=None,
  self_id_header=True)`: `await .connect(*, timeout=5.0) -> int` (101, or the refusing HTTP
  status, also in `.refused_status`), `.headers`, `.connected`, `.close_code`,
  `.close_reason`, `await .wait_closed(timeout=5.0) -> close code`, `await .close(code=1000)`,
  `await .abort()`; also an async context manager.
- `async with http_api_server(impl) as base_url`: `POST|GET /<action>` (JSON, form or query
  params); 401/403 token checks; go-cqhttp answers an unknown action with HTTP 404, NapCat
  with HTTP 200 and a failed body; stream actions write frames separated by `\\r\\n\\r\\n`.
- `HttpPostSender(impl, url, *, secret=None, authorization=True, timeout=5.0)`: attached to
  `impl.emit` until `await .close()` (or use `async with`); `await .post(event=None, *,
  repeat=1, body=None, signature=None, headers=None) -> httpx.Response`, `.headers(body)`,
  `.responses`, `.errors`; `sign(secret, body)` gives the X-Signature value.

CQ codes: `cqcode.to_cq(segments)`, `cqcode.from_cq(text)`, `cqcode.escape`, `cqcode.unescape`.
"""

from tests.onebot_sim import cqcode
from tests.onebot_sim.forward import ForwardServer, Handshake, forward_ws_server
from tests.onebot_sim.http_api import http_api_server
from tests.onebot_sim.http_post import HttpPostSender, sign
from tests.onebot_sim.implementation import DropConnection, Implementation, Signal, encode
from tests.onebot_sim.quirks import Quirks
from tests.onebot_sim.responses import NO_ECHO
from tests.onebot_sim.reverse import ReverseWsClient

__all__ = [
    "NO_ECHO",
    "DropConnection",
    "ForwardServer",
    "Handshake",
    "HttpPostSender",
    "Implementation",
    "Quirks",
    "ReverseWsClient",
    "Signal",
    "cqcode",
    "encode",
    "forward_ws_server",
    "http_api_server",
    "sign",
]
