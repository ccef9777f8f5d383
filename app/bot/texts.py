"""Every text the QQ bot sends: Simplified Chinese by default, English for English commands.

`TEXTS` maps a stable key to (zh, en); `text(key, lang, **values)` fills the `{placeholders}`
with `str.format` (values are data: braces inside them are not interpreted). Extra values are
ignored; a missing key or a missing value raises `KeyError`, which the tests catch.
`split_message` cuts long replies to what QQ delivers.
"""

from __future__ import annotations

import unicodedata

from app.core.i18n import Lang

# key -> (zh, en). Placeholders are listed in the comment above each group.
TEXTS: dict[str, tuple[str, str]] = {
    # --- help -----------------------------------------------------------------------------------
    "help": (
        "IT 服务台可用命令：\n"
        "/报修 标题 —— 提交报修，换行后可写详细情况，可附图片\n"
        "　例：/报修 三楼打印机卡纸\n"
        "　　　型号 HP M404，重启后还是不行\n"
        "/我的工单 —— 查看我未关闭的工单\n"
        "/查看 编号 —— 查看处理进度，例：/查看 20261124-0001\n"
        "/回复 编号 内容 —— 补充说明，例：/回复 20261124-0001 已经换过网线了\n"
        "/关闭 编号 —— 问题已解决，关闭工单\n"
        "/评价 编号 1-5 [意见] —— 为服务打分，例：/评价 20261124-0001 5 修得很快\n"
        "/绑定 绑定码 —— 关联网页账号（绑定码在网页端生成）\n"
        "收到工单通知后，直接引用回复那条消息也能补充说明。\n"
        "英文命令同样可用：/help /new /list /show /reply /close /rate /bind",
        "IT help desk commands:\n"
        "/new <title> — report a problem; add details on the following lines, attach pictures if useful\n"
        "  e.g. /new Printer on floor 3 jams\n"
        "       HP M404, still jams after a restart\n"
        "/list — your open tickets\n"
        "/show <number> — a ticket's progress, e.g. /show 20261124-0001\n"
        "/reply <number> <text> — add information, e.g. /reply 20261124-0001 I replaced the cable\n"
        "/close <number> — close a ticket once the problem is solved\n"
        "/rate <number> <1-5> [comment] — rate our help, e.g. /rate 20261124-0001 5 quick fix\n"
        "/bind <code> — link your web account (create the code on the website)\n"
        "You can also quote-reply a ticket notification to add to that ticket.\n"
        "Chinese commands work too: /帮助 /报修 /我的工单 /查看 /回复 /关闭 /评价 /绑定",
    ),
    "help_group": (
        "在群里请先 @我 再发命令，例如：\n"
        "@我 /报修 宿舍网络连不上\n"
        "处理进度会在群里 @你 通知。查看、回复、评价等操作建议私聊我，发送 /帮助 查看全部命令。",
        "In a group, @ me before the command, e.g.:\n"
        "@me /new Dorm network is down\n"
        "I will @ you here with updates. For /show, /reply, /rate and the rest, message me privately; "
        "send /help for the full list.",
    ),
    "help_agent": (
        "坐席群命令（需已绑定坐席账号）：\n"
        "/认领 编号 —— 认领工单，由你负责\n"
        "/指派 编号 @同事 —— 把工单指派给同事\n"
        "/回复 编号 内容 —— 公开回复，用户会收到\n"
        "/备注 编号 内容 —— 内部备注，用户看不到\n"
        "/关闭 编号 —— 关闭工单\n"
        "/查看 编号 —— 查看工单详情\n"
        "在群里引用回复工单通知会记为内部备注，只有 /回复 会发给用户。",
        "Agent group commands (your QQ must be bound to an agent account):\n"
        "/claim <number> — take the ticket yourself\n"
        "/assign <number> @colleague — assign it to a colleague\n"
        "/reply <number> <text> — public reply, the customer receives it\n"
        "/note <number> <text> — internal note, hidden from the customer\n"
        "/close <number> — close the ticket\n"
        "/show <number> — ticket details\n"
        "Quote-replying a notification here adds an internal note; only /reply reaches the customer.",
    ),
    # --- usage (no placeholders) --------------------------------------------------------------
    "usage_new": (
        "用法：/报修 标题\n换行后可写详细情况，也可以附上图片。\n例：/报修 三楼打印机卡纸",
        "Usage: /new <title>\nAdd details on the following lines; pictures are welcome.\n"
        "e.g. /new Printer on floor 3 jams",
    ),
    "usage_show": (
        "用法：/查看 工单编号\n例：/查看 20261124-0001\n发送 /我的工单 可以查到编号。",
        "Usage: /show <number>\ne.g. /show 20261124-0001\nSend /list to find your ticket numbers.",
    ),
    "usage_reply": (
        "用法：/回复 工单编号 内容\n例：/回复 20261124-0001 重启后还是蓝屏",
        "Usage: /reply <number> <text>\ne.g. /reply 20261124-0001 Still a blue screen after a restart",
    ),
    "usage_close": (
        "用法：/关闭 工单编号\n例：/关闭 20261124-0001",
        "Usage: /close <number>\ne.g. /close 20261124-0001",
    ),
    "usage_rate": (
        "用法：/评价 工单编号 分数(1-5) [意见]\n例：/评价 20261124-0001 5 处理很及时",
        "Usage: /rate <number> <score 1-5> [comment]\ne.g. /rate 20261124-0001 5 Fixed in no time",
    ),
    "usage_bind": (
        "用法：/绑定 绑定码\n绑定码在网页端生成，只能用一次，几分钟内有效。",
        "Usage: /bind <code>\nCreate the code on the website; it works once and expires within minutes.",
    ),
    "usage_claim": (
        "用法：/认领 工单编号\n例：/认领 20261124-0001",
        "Usage: /claim <number>\ne.g. /claim 20261124-0001",
    ),
    "usage_assign": (
        "用法：/指派 工单编号 @同事\n请 @ 一位同事（只能一位）。",
        "Usage: /assign <number> @colleague\n@ exactly one colleague.",
    ),
    "usage_note": (
        "用法：/备注 工单编号 内容\n备注仅坐席可见，用户看不到。",
        "Usage: /note <number> <text>\nNotes are visible to agents only.",
    ),
    "unknown_command": (
        "没有这个命令。发送 /帮助 查看可用命令。",
        "Unknown command. Send /help to see what I can do.",
    ),
    # --- results --------------------------------------------------------------------------------
    # ticket_created: {number} {title}
    "ticket_created": (
        "已收到报修，工单编号：{number}\n标题：{title}\n我们会尽快处理，进度会在 QQ 上通知你。"
        "也可以随时发送 /查看 {number} 查看进度。",
        "Got it. Ticket number: {number}\nTitle: {title}\nWe will get to it soon and keep you posted here. "
        "Send /show {number} any time to check.",
    ),
    "ticket_list": ("你未关闭的工单：", "Your open tickets:"),
    # ticket_list_item: {number} {status} {title}
    "ticket_list_item": ("· {number}【{status}】{title}", "• {number} [{status}] {title}"),
    # ticket_list_more: {count} (tickets not shown)
    "ticket_list_more": ("……还有 {count} 个，请到网页端查看。", "…and {count} more; see the website."),
    "ticket_list_empty": (
        "你目前没有未关闭的工单。遇到问题可以发送 /报修 标题。",
        "You have no open tickets. Send /new <title> to report a problem.",
    ),
    # ticket_show: {number} {title} {status} {priority} {updated}
    "ticket_show": (
        "工单 {number}：{title}\n状态：{status}　优先级：{priority}\n最近更新：{updated}",
        "Ticket {number}: {title}\nStatus: {status}  Priority: {priority}\nLast update: {updated}",
    ),
    # ticket_show_message: {who} {when} {text}
    "ticket_show_message": ("{when} {who}：\n{text}", "{when} {who}:\n{text}"),
    # reply_added, note_added, ticket_closed, rate_invite: {number}
    "reply_added": ("已补充到工单 {number}，处理人员会看到。", "Added to ticket {number}; the team will see it."),
    "note_added": ("已为工单 {number} 添加内部备注。", "Internal note added to ticket {number}."),
    "ticket_closed": ("工单 {number} 已关闭。", "Ticket {number} is closed."),
    "rate_invite": (
        "欢迎为本次服务打分：/评价 {number} 1-5 [意见]",
        "How did we do? /rate {number} <1-5> [comment]",
    ),
    # rating_saved: {number} {score}
    "rating_saved": (
        "感谢评价！工单 {number} 得分：{score} 分。",
        "Thanks for your feedback! Ticket {number} rated {score}/5.",
    ),
    # bind_ok: {username}; bind_moved: {count}
    "bind_ok": ("绑定成功，此 QQ 已关联账号 {username}。", "Done: this QQ account is now linked to {username}."),
    "bind_moved": (
        "你之前在 QQ 上提交的 {count} 个工单已一并转到该账号下。",
        "The {count} ticket(s) you opened from QQ now belong to that account.",
    ),
    "bind_failed": (
        "绑定码无效或已过期，请在网页端重新生成后再试。",
        "That code is invalid or expired. Create a new one on the website and try again.",
    ),
    "bind_too_many_attempts": (
        "尝试次数过多，请稍后再试。",
        "Too many attempts. Please try again later.",
    ),
    # claimed, assigned: {number} {agent}
    "claimed": ("{agent} 已认领工单 {number}。", "{agent} claimed ticket {number}."),
    "assigned": ("工单 {number} 已指派给 {agent}。", "Ticket {number} is assigned to {agent}."),
    # --- errors -----------------------------------------------------------------------------
    # ticket_not_found, ticket_closed_already: {number}. Not-found also covers someone else's
    # ticket: a customer must not learn that it exists.
    "ticket_not_found": (
        "没有找到工单 {number}，请检查编号。发送 /我的工单 可以查看你的工单。",
        "Ticket {number} was not found; please check the number. Send /list to see your tickets.",
    ),
    "ticket_closed_already": (
        "工单 {number} 已关闭。如果问题还在，请发送 /报修 重新提交。",
        "Ticket {number} is already closed. If the problem is back, send /new to open a new ticket.",
    ),
    "not_agent": (
        "抱歉，本群的工单命令仅限已绑定的坐席使用。"
        "坐席同事请先在网页端生成 QQ 绑定码（POST /users/me/qq-binding），再私聊我发送 /绑定 绑定码。",
        "Sorry, ticket commands in this group are for bound agents only. "
        "Agents: create a QQ binding code on the web (POST /users/me/qq-binding), "
        "then send me /bind <code> in a private chat.",
    ),
    "not_agent_target": (
        "被指派的人还没有绑定坐席账号，无法指派。请 @ 一位已绑定的坐席同事。",
        "That person is not a bound agent, so the ticket cannot be assigned to them. @ a bound agent instead.",
    ),
    "rate_not_allowed": (
        "工单解决或关闭后才能评价哦。",
        "You can rate a ticket once it is resolved or closed.",
    ),
    "rate_limited": ("操作太频繁了，请稍后再试。", "You are going a bit fast; please try again in a moment."),
    "internal_error": ("抱歉，系统出了点问题，请稍后再试。", "Sorry, something went wrong. Please try again later."),
    # attachment_failed: {name}
    "attachment_failed": (
        "附件 {name} 保存失败，请稍后重发，或到网页端上传。",
        "Could not save the attachment {name}; please send it again later or upload it on the website.",
    ),
    # --- notifications ------------------------------------------------------------------------
    # notify_reply: {number} {title} {who} {text}
    "notify_reply": (
        "工单 {number}「{title}」有新回复：\n{who}：{text}\n\n引用回复本消息即可直接回复。",
        'New reply on ticket {number} "{title}":\n{who}: {text}\n\nQuote-reply to this message to answer.',
    ),
    # notify_status: {number} {title} {status}
    "notify_status": (
        "工单 {number}「{title}」状态更新为：{status}",
        'Ticket {number} "{title}" is now: {status}',
    ),
    # notify_new_ticket_agents: {number} {title} {requester} {priority} {channel}
    "notify_new_ticket_agents": (
        "新工单 {number}\n标题：{title}\n提交人：{requester}\n优先级：{priority}　来源：{channel}\n"
        "发送 /认领 {number} 认领。",
        "New ticket {number}\nTitle: {title}\nFrom: {requester}\nPriority: {priority}  Channel: {channel}\n"
        "Send /claim {number} to take it.",
    ),
    # notify_urgent_agents: {number} {title} {priority}
    "notify_urgent_agents": (
        "⚠️ 紧急工单 {number}「{title}」，优先级：{priority}，请尽快处理！",
        '⚠️ Urgent: ticket {number} "{title}", priority {priority}. Please handle it now!',
    ),
    # notify_sla_warning, notify_sla_breached: {number} {title} {target} {due}; {target} is
    # sla_target_first_response or sla_target_resolution
    "notify_sla_warning": (
        "⏰ 工单 {number}「{title}」{target}即将超时，请在 {due} 前处理。",
        '⏰ Ticket {number} "{title}": {target} is about to breach its SLA; handle it before {due}.',
    ),
    "notify_sla_breached": (
        "🚨 工单 {number}「{title}」{target}已超时（截止 {due}），请立即处理！",
        '🚨 Ticket {number} "{title}": {target} breached its SLA (due {due}). Please handle it now!',
    ),
    "sla_target_first_response": ("首次响应", "first response"),
    "sla_target_resolution": ("解决", "resolution"),
    # For the ticket timeline, read by agents.
    "notify_undeliverable": (
        "QQ 通知无法送达：用户未加机器人好友，也没有可以 @ 提醒的群，请通过其他方式联系。",
        "The QQ notification could not be delivered: the user is not the bot's friend and there is "
        "no group to @ them in. Please reach them another way.",
    ),
    # --- the AI assistant (private chat, free text) ---------------------------------------------
    # assistant_sources: {titles} (already quoted: 《重置密码》、《连接校园网》)
    "assistant_sources": ("参考：{titles}", "Sources: {titles}"),
    "assistant_hint": ("回复「转人工」联系人工客服。", 'Reply "human" to reach a person.'),
    "assistant_resolved": (
        "很高兴问题解决了！以后遇到问题随时找我。",
        "Glad that solved it! Message me any time you need help.",
    ),
    "assistant_describe_first": (
        "请先用一两句话描述你遇到的问题，我会先帮你查找解决办法；解决不了再为你转人工。"
        "也可以发送 /报修 标题 直接提交工单。",
        "Please describe your problem in a sentence or two: I will look for a solution first and "
        "pass you to a person if that does not help. Or send /new <title> to open a ticket directly.",
    ),
    # assistant_rate_limited: {seconds}
    "assistant_rate_limited": (
        "消息有点多，请 {seconds} 秒后再问我。需要人工时回复「转人工」。",
        'That is a lot of messages; please ask again in {seconds} seconds. Reply "human" to reach a person.',
    ),
    # assistant_handover_*: {number}
    "assistant_handover_requested": (
        "好的，已为你转人工客服，工单编号：{number}\n我们会尽快处理，进度会在 QQ 上通知你；"
        "也可以随时发送 /查看 {number} 查看进度。",
        "Sure, a person will take it from here. Ticket number: {number}\n"
        "We will keep you posted here; send /show {number} any time to check.",
    ),
    "assistant_handover_ungrounded": (
        "这个问题我在知识库里没有找到可靠的答案，已为你转人工客服，工单编号：{number}\n"
        "我们会尽快处理，进度会在 QQ 上通知你；也可以随时发送 /查看 {number} 查看进度。",
        "I could not find a reliable answer in our knowledge base, so I passed your question to a person. "
        "Ticket number: {number}\nWe will keep you posted here; send /show {number} any time to check.",
    ),
    "assistant_handover_turns": (
        "看来问题还没有解决，已为你转人工客服，工单编号：{number}\n"
        "我们会尽快处理，进度会在 QQ 上通知你；也可以随时发送 /查看 {number} 查看进度。",
        "It looks like this is not solved yet, so I passed it to a person. Ticket number: {number}\n"
        "We will keep you posted here; send /show {number} any time to check.",
    ),
    "assistant_handover_unavailable": (
        "智能助手暂时无法回答，已为你转人工客服，工单编号：{number}\n"
        "我们会尽快处理，进度会在 QQ 上通知你；也可以随时发送 /查看 {number} 查看进度。",
        "The assistant cannot answer right now, so I passed your question to a person. Ticket number: {number}\n"
        "We will keep you posted here; send /show {number} any time to check.",
    ),
    # For the ticket a handover opens, read by agents. assistant_transcript: {reason}
    "assistant_transcript": (
        "（来自 QQ 智能助手，转人工原因：{reason}）",
        "(From the QQ assistant, handed over: {reason})",
    ),
    "assistant_transcript_user": ("用户", "User"),
    "assistant_transcript_bot": ("助手", "Assistant"),
    "assistant_reason_requested": ("用户要求人工服务", "the user asked for a person"),
    "assistant_reason_ungrounded": ("知识库中没有可靠答案", "no reliable answer in the knowledge base"),
    "assistant_reason_turns": ("多轮回答后仍未解决", "still unsolved after several answers"),
    "assistant_reason_unavailable": ("AI 服务不可用", "the AI service was unavailable"),
    # --- names --------------------------------------------------------------------------------
    "status_new": ("新建", "New"),
    "status_open": ("处理中", "Open"),
    "status_pending": ("等待回复", "Pending"),
    "status_resolved": ("已解决", "Resolved"),
    "status_closed": ("已关闭", "Closed"),
    "priority_low": ("低", "Low"),
    "priority_normal": ("普通", "Normal"),
    "priority_high": ("高", "High"),
    "priority_urgent": ("紧急", "Urgent"),
    "channel_web": ("网页", "Web"),
    "channel_android": ("安卓 App", "Android app"),
    "channel_miniprogram": ("微信小程序", "WeChat mini program"),
    "channel_qq": ("QQ", "QQ"),
    "channel_api": ("API", "API"),
}

QQ_MESSAGE_LIMIT = 1500
# Never cut right before these: they belong to the character in front (emoji ZWJ sequences,
# variation selectors, skin tones, keycaps).
_JOINERS = frozenset({"\u200d", "\ufe0e", "\ufe0f", "\u20e3"}) | {chr(c) for c in range(0x1F3FB, 0x1F400)}


def text(key: str, lang: Lang = "zh", **values: object) -> str:
    zh, en = TEXTS[key]
    return (en if lang == "en" else zh).format(**values)


def _name(prefix: str, value: str, lang: Lang) -> str:
    key = f"{prefix}_{value}"
    return text(key, lang) if key in TEXTS else value  # an unknown value shows as-is, never fails


def status_name(status: str, lang: Lang = "zh") -> str:
    """new/open/pending/resolved/closed -> 新建/处理中/等待回复/已解决/已关闭 (New/Open/...)."""
    return _name("status", str(status), lang)


def priority_name(priority: str, lang: Lang = "zh") -> str:
    """low/normal/high/urgent -> 低/普通/高/紧急 (Low/Normal/High/Urgent)."""
    return _name("priority", str(priority), lang)


def channel_name(channel: str, lang: Lang = "zh") -> str:
    """web/android/miniprogram/qq/api -> 网页/安卓 App/微信小程序/QQ/API."""
    return _name("channel", str(channel), lang)


def split_message(text: str, limit: int = QQ_MESSAGE_LIMIT) -> list[str]:
    """`text` in parts of at most `limit` characters, cut at line breaks when possible.

    A line longer than `limit` is cut at the limit, but never between a character and the
    combining mark, joiner or variation selector after it. Line breaks at a cut are dropped;
    blank parts are left out.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    parts: list[str] = []
    current = ""
    for line in text.replace("\r\n", "\n").split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) <= limit:
            current = candidate
            continue
        parts.append(current)
        while len(line) > limit:
            cut = _cut(line, limit)
            parts.append(line[:cut])
            line = line[cut:]
        current = line
    parts.append(current)
    return [part.strip("\n") for part in parts if part.strip()]


def _cut(line: str, limit: int) -> int:
    # Back off a little to keep a character whole; give up on pathological runs of marks.
    for cut in range(limit, max(limit - 32, 0), -1):
        if not _attached(line, cut):
            return cut
    return limit


def _attached(line: str, index: int) -> bool:
    """Whether cutting before `line[index]` would split a character from what belongs to it."""
    char, before = line[index], line[index - 1]
    return char in _JOINERS or before == "\u200d" or unicodedata.combining(char) != 0
