"""Chinese full-text search: segmentation first.

Chinese has no spaces, so neither SQLite's FTS5 (`unicode61`) nor PostgreSQL's `simple`
configuration can find the word 密码 inside “提示密码错误” on their own. Text is therefore cut
into words in Python — NFKC (full-width letters and digits become ASCII), lower case, jieba's
`cut_for_search` (which also emits the shorter words inside long ones: 打印机 → 打印, 印机,
打印机), split on anything that is not a word character — and the databases index those tokens
joined by spaces. The query is segmented the same way, so both sides agree on what a word is.

A `Segmenter` owns its own jieba dictionary (never jieba's global one), loaded once at start-up
(about a second) and off the event loop; a user dictionary adds domain words (one per line, in
jieba's `word [frequency] [tag]` format), e.g. the names of a campus's buildings and systems.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from pathlib import Path

import jieba

_NON_WORD = re.compile(r"[^\w]+")

jieba.setLogLevel(logging.WARNING)  # it logs its dictionary loading at INFO on every start


class Segmenter:
    def __init__(self, user_dictionary: Path | None = None) -> None:
        self.user_dictionary = user_dictionary
        self._tokenizer = jieba.Tokenizer()
        self._loaded = False
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the dictionary (blocking: call it in a thread at start-up). Idempotent."""
        with self._lock:
            if self._loaded:
                return
            self._tokenizer.initialize()
            if self.user_dictionary is not None:
                self._tokenizer.load_userdict(str(self.user_dictionary))
            self._loaded = True

    def tokens(self, text: str) -> list[str]:
        """The words of `text`, normalised, in order (repeats kept: they weigh in ranking)."""
        self.load()
        normalised = unicodedata.normalize("NFKC", text).lower()
        words: list[str] = []
        for piece in self._tokenizer.cut_for_search(normalised):
            words.extend(part for part in _NON_WORD.split(piece) if part)
        return words

    def segment(self, text: str) -> str:
        """What the index stores for `text`: its tokens joined by spaces."""
        return " ".join(self.tokens(text))
