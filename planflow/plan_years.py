"""A plan of every year: ``{year}`` in a definition, and which year an instance is of.

A definition may leave ``year:`` out (or null): it is then written once for all years, and
the year is given when it is loaded (``--year``, the year the annual schedule fires in, the
year in an instance's key ``<plan id>/<year>``). Anywhere in the definition's text ``{year}``
stands for that year, ``{year+1}`` / ``{year-1}`` for the next / previous one
(``due: {before: "{year}-12-10"}``, ``name: … năm {year}``). A definition with a fixed year
is the plan of that year alone.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["YEARS", "fixed_year", "this_year", "with_year", "year_of_key"]

YEARS = (1900, 2200)
_MARK = re.compile(r"\{year(?:\s*([+-])\s*(\d{1,3}))?\}")
_FIXED = re.compile(r"^year:[ \t]*([^#\n]*?)[ \t]*(?:#.*)?$", re.M)


def fixed_year(text: str) -> tuple[int | None, int]:
    """The year a definition's text fixes at its top level (None: a plan of every year),
    and the line that says it (0 when none does)."""
    m = _FIXED.search(text)
    if m is None:
        return None, 0
    line = text.count("\n", 0, m.start()) + 1
    value = m.group(1).strip().strip("'\"")
    return (int(value) if value.isdigit() else None), line


def with_year(text: str, year: int) -> str:
    """The text with every ``{year}``, ``{year+N}``, ``{year-N}`` written out for ``year``."""
    def year_for(m: re.Match) -> str:
        if not m.group(1):
            return str(year)
        n = int(m.group(2))
        return str(year + n if m.group(1) == "+" else year - n)

    return _MARK.sub(year_for, text)


def this_year(tz: dt.tzinfo | None = None) -> int:
    """The year of the real clock where the plan runs (Vietnam unless said)."""
    from zoneinfo import ZoneInfo

    return dt.datetime.now(tz or ZoneInfo("Asia/Ho_Chi_Minh")).year


def year_of_key(key: str) -> int | None:
    """The year in an instance's key ``<plan id>/<year>[/…]``; None when it carries none."""
    parts = key.split("/")
    if len(parts) >= 2 and parts[1].isdigit() and YEARS[0] <= int(parts[1]) <= YEARS[1]:
        return int(parts[1])
    return None
