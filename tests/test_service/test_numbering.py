"""Ticket number formats split around `{seq}` for PostgreSQL (app/services/numbering.py)."""

from __future__ import annotations

from datetime import date

import pytest

from app.services.numbering import NumberShape, number_shape

DAY = date(2026, 11, 25)


@pytest.mark.parametrize(
    ("number_format", "shape"),
    [
        ("{date:%Y%m%d}-{seq:04d}", NumberShape("20261125-", 4, "")),
        ("HD{seq}", NumberShape("HD", 0, "")),
        ("{seq:d}/{date:%y}", NumberShape("", 0, "/26")),
        ("{{工单}}{date.month}-{seq:06}", NumberShape("{工单}11-", 6, "")),
    ],
)
def test_formats_split_around_seq(number_format, shape):
    assert number_shape(number_format, DAY) == shape
    for seq in (1, 42, 999_999, 1_234_567):
        assert shape.render(seq) == number_format.format(date=DAY, seq=seq)


@pytest.mark.parametrize("number_format", ["T{seq:x}", "{seq:>6}", "{seq:4d}", "{seq!s}", "{seq}-{seq}", "{date}"])
def test_formats_python_alone_renders_are_not_split(number_format):
    assert number_shape(number_format, DAY) is None
