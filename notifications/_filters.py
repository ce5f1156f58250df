"""Formatting filters for the notification templates.

Filters only format; they never decide. Dates and numbers are written by
``vn_format`` (Nghị định 30/2020/NĐ-CP), shared with the engine's report; this module
adds what documents need (số, ký hiệu; names inside a sentence).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jinja2

from .vn_format import vn_date, vn_datetime, vn_number

ELLIPSIS = "…"

# Words naming an administrative level; written in lower case inside a sentence
# ("UBND TỈNH HẢI DƯƠNG" -> "UBND tỉnh Hải Dương").
_LEVEL_WORDS = ("thành phố", "thị xã", "thị trấn", "tỉnh", "huyện", "quận", "xã", "phường")
_ACRONYMS = frozenset({"UBND", "HĐND", "MTTQ"})


def doc_number(number: object, kind_code: str = "KH-UBND") -> str:
    """Số, ký hiệu of a document.

    ``None`` -> ``"…/KH-UBND"`` (number not yet given); a bare number such as
    ``118`` or ``"118"`` -> ``"118/KH-UBND"``; a full "118/KH-UBND" is kept as is.
    """
    if number is None or (isinstance(number, str) and not number.strip()):
        return f"{ELLIPSIS}/{kind_code}"
    text = str(number).strip()
    if "/" in text:
        return text
    return f"{text}/{kind_code}"


def lcfirst(value: str) -> str:
    """Lower-case the first letter, to use a title inside a sentence."""
    value = str(value)
    return value[:1].lower() + value[1:]


def in_text(value: str) -> str:
    """An upper-case heading name as written inside a sentence.

    ``"UBND TỈNH HẢI DƯƠNG"`` -> ``"UBND tỉnh Hải Dương"``,
    ``"UBND HUYỆN KIM THÀNH"`` -> ``"UBND huyện Kim Thành"``: leading acronyms
    stay upper case, the level word after them goes lower case, the other words
    are capitalised. A name that is not all upper case is returned unchanged.
    """
    value = str(value)
    if value != value.upper():
        return value
    words = value.split()
    i = 0
    out: list[str] = []
    while i < len(words) and words[i] in _ACRONYMS:
        out.append(words[i])
        i += 1
    rest = [w.lower() for w in words[i:]]
    for level in sorted(_LEVEL_WORDS, key=lambda s: -len(s.split())):
        size = len(level.split())
        if " ".join(rest[:size]) == level:
            out.extend(rest[:size])
            rest = rest[size:]
            break
    out.extend(w[:1].upper() + w[1:] for w in rest)
    return " ".join(out)


def _strict(fn: Callable) -> Callable:
    """Given an undefined value, fail the way jinja2 does ("'x' is undefined")."""

    @functools.wraps(fn)
    def wrapper(value, *args, **kwargs):
        if isinstance(value, jinja2.Undefined):
            str(value)  # the templates' StrictUndefined raises here, with jinja2's own message
            raise jinja2.UndefinedError(f"{fn.__name__}: the value is undefined")
        return fn(value, *args, **kwargs)

    return wrapper


FILTERS = {
    fn.__name__: _strict(fn)
    for fn in (vn_date, vn_datetime, doc_number, lcfirst, in_text, vn_number)
}
