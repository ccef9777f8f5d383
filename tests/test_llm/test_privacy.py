"""Personal data never leaves for an LLM provider: what is masked, and what is left alone."""

from __future__ import annotations

import pytest

from app.llm.privacy import Masker


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("我的手机 13800138000，麻烦回电", "我的手机 [手机号]，麻烦回电"),
        ("电话：138 0013 8000", "电话：[手机号]"),
        ("电话：138-0013-8000", "电话：[手机号]"),
        ("+86 13912345678", "[手机号]"),
        ("8613912345678", "[手机号]"),
        ("办公室 010-12345678", "办公室 [电话]"),
        ("(0755)87654321", "[电话]"),
        ("身份证 11010519491231002X 帮我重置", "身份证 [身份证号] 帮我重置"),
        ("身份证号440308199901011234", "身份证号[身份证号]"),
        ("发邮件到 zhang.san@example.edu.cn 就行", "发邮件到 [邮箱] 就行"),
    ],
)
def test_personal_data_is_replaced_by_a_placeholder(text: str, masked: str) -> None:
    assert Masker().mask(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "蓝屏错误代码 0x0000007B",
        "工单 20261124-0001",
        "订单号 2026112412345678901234",  # a longer digit string is not a phone or an ID
        "IP 192.168.1.10，端口 8080",
        "学号 2023011234",
        "价格 12800 元",
    ],
)
def test_codes_and_numbers_that_are_not_personal_stay(text: str) -> None:
    assert Masker().mask(text) == text


def test_an_organisation_adds_its_own_patterns() -> None:
    masker = Masker(extra_patterns=[r"(?<!\d)20\d{8}(?!\d)"])  # student numbers
    assert masker.mask("学号 2023011234 登不上教务系统") == "学号 [已隐藏] 登不上教务系统"


def test_a_broken_pattern_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="mask pattern"):
        Masker(extra_patterns=["(unclosed"])


def test_masking_can_be_switched_off() -> None:
    assert Masker(enabled=False).mask("13800138000") == "13800138000"
