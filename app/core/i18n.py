"""User-facing texts in Simplified Chinese (default) and English, chosen by Accept-Language."""

from __future__ import annotations

from typing import Literal

Lang = Literal["zh", "en"]
DEFAULT_LANG: Lang = "zh"

# code -> (zh, en). Keys are the stable `code` values of problem+json responses.
ERROR_TEXTS: dict[str, tuple[str, str]] = {
    "internal_error": ("服务器内部错误，请稍后重试", "Internal server error; please try again later"),
    "bad_request": ("请求无效", "Bad request"),
    "malformed_json": ("请求体不是有效的 JSON", "The request body is not valid JSON"),
    "validation_error": ("请求参数有误", "The request has invalid fields"),
    "not_found": ("资源不存在", "Not found"),
    "method_not_allowed": ("不支持该请求方法", "Method not allowed"),
    "payload_too_large": ("请求体过大", "The request body is too large"),
    "unsupported_media_type": ("不支持的内容类型", "Unsupported media type"),
    "not_authenticated": ("请先登录", "Authentication required"),
    "invalid_token": ("登录凭证无效或已过期，请重新登录", "The access token is invalid or expired"),
    "conflict": ("操作与当前状态冲突", "The request conflicts with the current state"),
    "forbidden": ("没有权限执行该操作", "You are not allowed to do this"),
    "too_many_requests": ("请求过于频繁，请稍后再试", "Too many requests; try again later"),
    "invalid_credentials": ("用户名或密码错误", "Wrong username or password"),
    "user_disabled": ("该账号已被停用", "This account is disabled"),
    "registration_closed": ("当前未开放注册", "Registration is closed"),
    "username_taken": ("用户名已被占用", "This username is taken"),
    "invalid_refresh_token": ("刷新令牌无效或已过期，请重新登录", "The refresh token is invalid or expired"),
    "refresh_token_reused": (
        "检测到刷新令牌被重复使用，该登录会话已全部注销，请重新登录",
        "A spent refresh token was reused; every token of this session is revoked, log in again",
    ),
    "wrong_password": ("当前密码不正确", "The current password is wrong"),
    "user_not_found": ("用户不存在", "User not found"),
    "last_admin": ("不能停用或降级最后一个管理员", "The last active admin cannot be disabled or demoted"),
    "wechat_login_disabled": ("未配置微信登录", "WeChat login is not configured"),
    "wechat_code_invalid": ("微信登录凭证无效或已使用，请重新登录", "The WeChat login code is invalid or used"),
    "wechat_user_blocked": ("该微信账号存在风险，暂时无法登录", "WeChat flagged this account as risky"),
    "wechat_unavailable": ("微信服务暂时不可用，请稍后重试", "WeChat is unavailable; try again later"),
    "wechat_misconfigured": ("微信登录配置有误，请联系管理员", "WeChat login is misconfigured; contact the admin"),
    "field_not_allowed": ("无权设置某些字段", "You may not set some of these fields"),
    "ticket_not_found": ("工单不存在", "Ticket not found"),
    "attachment_not_found": ("附件不存在", "Attachment not found"),
    "category_not_found": ("分类不存在", "Category not found"),
    "team_not_found": ("团队不存在", "Team not found"),
    "tag_not_found": ("标签不存在", "Tag not found"),
    "canned_response_not_found": ("快捷回复不存在", "Canned response not found"),
    "kb_article_not_found": ("知识库文章不存在", "Knowledge-base article not found"),
    "category_exists": ("同一上级分类下已有同名分类", "A category with this name already exists under that parent"),
    "team_exists": ("团队名称已被占用", "A team with this name already exists"),
    "sla_policy_not_found": ("SLA 策略不存在", "SLA policy not found"),
    "sla_policy_exists": (
        "该优先级和分类已有 SLA 策略",
        "An SLA policy for this priority and category already exists",
    ),
    "invalid_transition": ("工单当前状态不允许此操作", "The ticket's status does not allow this change"),
    "ticket_closed": ("工单已关闭，请新建工单", "The ticket is closed; please open a new one"),
    "version_conflict": ("工单已被他人修改，请刷新后重试", "Someone else changed this; reload and try again"),
    "merge_not_allowed": ("无法合并这两个工单", "These tickets cannot be merged"),
    "rating_not_allowed": ("当前无法评价该工单", "This ticket cannot be rated now"),
    "ai_disabled": ("AI 功能未开启", "This AI feature is switched off"),
    "ai_unavailable": ("AI 服务暂时不可用，请稍后重试", "The AI providers are unavailable; try again later"),
    "ai_interrupted": ("AI 回复中断，请重试", "The AI provider stopped mid-answer; try again"),
    "idempotency_key_reused": (
        "该 Idempotency-Key 已用于另一个请求",
        "This Idempotency-Key was used for a different request",
    ),
    "idempotency_key_in_progress": (
        "相同 Idempotency-Key 的请求正在处理，请稍后重试",
        "A request with this Idempotency-Key is still being processed",
    ),
    "webhook_not_found": ("Webhook 不存在", "Webhook not found"),
    "too_many_streams": ("打开的实时连接过多，请关闭一些页面后重试", "Too many realtime connections are open"),
    "job_not_found": ("任务不存在", "Job not found"),
    "job_not_retryable": ("只有失败或已放弃的任务可以重试", "Only failed or dead jobs can be retried"),
    "not_ready": ("服务尚未就绪", "The service is not ready"),
    "database_unavailable": ("数据库暂时无法连接，请稍后重试", "The database is unavailable; try again later"),
    "invalid_cursor": ("分页游标无效", "The pagination cursor is invalid"),
    "qq_binding_code_invalid": (
        "绑定码无效、已过期或已被使用，请重新获取",
        "The binding code is wrong, expired or already used; get a new one",
    ),
    "qq_binding_rate_limited": (
        "绑定尝试过于频繁，请稍后再试",
        "Too many binding attempts; try again later",
    ),
}

# Field-level problems in 422 responses: code -> (zh, en); {limit} is filled in where known.
FIELD_TEXTS: dict[str, tuple[str, str]] = {
    "required": ("必填", "This field is required"),
    "too_long": ("长度不能超过 {limit}", "At most {limit} characters"),
    "too_short": ("长度不能少于 {limit}", "At least {limit} characters"),
    "blank": ("不能为空", "Must not be blank"),
    "invalid_type": ("类型不正确", "Wrong type"),
    "invalid_value": ("取值无效", "Invalid value"),
    "invalid_email": ("邮箱格式不正确", "Not a valid email address"),
    "invalid_username": (
        "用户名只能包含字母、数字、汉字、下划线、点和短横线",
        "Letters, digits, Chinese characters, '_', '.' and '-' only",
    ),
    "too_small": ("不能小于 {limit}", "Must be at least {limit}"),
    "too_large": ("不能大于 {limit}", "Must be at most {limit}"),
    "unknown_field": ("不支持的字段", "Unknown field"),
    "field_not_allowed": ("无权设置该字段", "You may not set this field"),
    "nesting_too_deep": ("分类最多只能有一级子分类", "Categories nest one level deep only"),
    "parent_inactive": ("上级分类已停用", "The parent category is inactive"),
    "range_too_long": ("日期范围不能超过 {limit} 天", "The range may span at most {limit} days"),
}


def pick_language(accept_language: str | None) -> Lang:
    """The best of zh/en by the header's q-values; Chinese when nothing matches."""
    if not accept_language:
        return DEFAULT_LANG
    best: tuple[float, Lang] | None = None
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        lang: Lang | None = None
        primary = tag.strip().lower().split("-")[0]
        if primary == "en":
            lang = "en"
        elif primary == "zh":
            lang = "zh"
        if lang is None or quality <= 0:
            continue
        # Earlier entries win ties, as the header lists preferences in order.
        key = quality - position * 1e-6
        if best is None or key > best[0]:
            best = (key, lang)
    return best[1] if best else DEFAULT_LANG


def error_text(code: str, lang: Lang) -> str:
    zh, en = ERROR_TEXTS.get(code) or ERROR_TEXTS["internal_error"]
    return en if lang == "en" else zh


def field_text(code: str, lang: Lang, limit: object | None = None) -> str:
    zh, en = FIELD_TEXTS.get(code, FIELD_TEXTS["invalid_value"])
    text = en if lang == "en" else zh
    return text.format(limit=limit) if limit is not None else text.replace(" {limit}", "")
