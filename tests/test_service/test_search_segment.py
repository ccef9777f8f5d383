"""Segmentation for search: the golden words a Chinese helpdesk must find."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.services.search import INLINE_CHARS, SearchIndex, Segmenter, parse_query


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    shared = Segmenter()
    shared.load()
    return shared


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("邮箱登录失败，提示密码错误", "密码"),
        ("三楼打印机卡纸", "打印机"),
        ("三楼打印机卡纸", "打印"),
        ("电脑蓝屏了", "蓝屏"),
        ("VPN无法连接", "vpn"),
        ("ＶＰＮ连不上", "vpn"),  # full-width letters from Chinese input methods
        ("wifi 连不上", "wifi"),
        ("wifi 连不上", "连不上"),
        ("工单２０２６号", "2026"),
    ],
)
def test_the_words_people_search_for_are_tokens(segmenter: Segmenter, text: str, word: str) -> None:
    assert word in segmenter.tokens(text)


def test_punctuation_and_spaces_are_not_tokens(segmenter: Segmenter) -> None:
    assert segmenter.segment("打印机，卡纸！  （三楼）") == "打印 印机 打印机 卡纸 三楼"


def test_a_query_segments_like_the_text_it_should_find(segmenter: Segmenter) -> None:
    document = set(segmenter.tokens("宿舍的校园网今天一直连不上"))
    assert set(segmenter.tokens("校园网 连不上")) <= document


def test_a_user_dictionary_adds_domain_words(tmp_path: Path, segmenter: Segmenter) -> None:
    dictionary = tmp_path / "words.txt"
    dictionary.write_text("一卡通充值机 100 n\n", encoding="utf-8")
    custom = Segmenter(dictionary)
    assert "一卡通充值机" in custom.tokens("图书馆的一卡通充值机坏了")
    assert "一卡通充值机" not in segmenter.tokens("图书馆的一卡通充值机坏了")  # its own dictionary only


def test_empty_and_symbol_only_text_gives_no_tokens(segmenter: Segmenter) -> None:
    assert segmenter.tokens("") == []
    assert segmenter.tokens("？！。，…… ") == []


@pytest.mark.parametrize(
    ("query", "terms", "substring"),
    [
        ("打印机", ("打印机",), None),  # not also 打印 and 印机: a text with 打印机 has them
        ("打印", ("打印",), None),
        ("蓝屏", ("蓝屏",), None),  # a helpdesk word: found as a word, through the index
        ("电脑蓝屏了", ("电脑", "蓝屏"), None),  # 了 next to words is not required
        ("wifi 连不上", ("wifi", "连不上"), None),
        ("卡", (), "卡"),  # one character: a substring
        ("5g", (), "5g"),  # two characters, not a word: a substring (also inside 5ghz)
        ("ＶＰ", (), "vp"),
        ("，。！", (), None),  # nothing to look for
    ],
)
def test_a_query_becomes_the_words_to_find_or_a_substring(
    segmenter: Segmenter, query: str, terms: tuple[str, ...], substring: str | None
) -> None:
    parsed = parse_query(segmenter, query)
    assert (parsed.terms, parsed.substring) == (terms, substring)


def test_helpdesk_words_are_words_without_any_configuration(segmenter: Segmenter) -> None:
    assert "闪退" in segmenter.tokens("微信一打开就闪退")
    assert "教务系统" in segmenter.tokens("教务系统登不上")


class _WhereSegmented(Segmenter):
    """Records the thread each text was segmented in."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def segment(self, text: str) -> str:
        self.threads.append(threading.get_ident())
        return super().segment(text)


async def test_short_texts_are_segmented_on_the_event_loop_and_long_ones_in_a_thread() -> None:
    segmenter = _WhereSegmented()
    index = SearchIndex(segmenter)
    here = threading.get_ident()
    # Not yet loaded: building the dictionary takes seconds, never on the event loop.
    assert await index.segment("打印机") == "打印 印机 打印机"
    assert segmenter.threads.pop() != here
    await index.load()
    assert await index.segment_all("宿舍 wifi 连不上", "手机和电脑都连不上宿舍的无线网络。") == [
        "宿舍 wifi 连不上",
        "手机 和 电脑 都 连不上 宿舍 的 无线 线网 网络 无线网 无线网络",
    ]
    assert segmenter.threads == [here, here]
    long = "打印机卡纸" * (INLINE_CHARS // 5 + 1)
    await index.segment_all(long)
    assert segmenter.threads[-1] != here
