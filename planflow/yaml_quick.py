"""A quick read of a plain YAML text: its data built in compiled code, without lines.

``quick_load`` gives what ``planflow.yaml_events.build`` would give, lines left out (the data
``strip_lines`` makes of it), or None when it cannot be sure of that; the caller then reads the
text with lines (``planflow.yaml_reader``), which also says where any problem is. Lines are
wanted only for problems, so a large file that has none (a registry of 10 000 units) is read
here once, and read again with lines only when something in it is wrong.

The parser (``yaml-rs``, Rust) reads YAML 1.2; planflow reads YAML 1.1 as PyYAML does. The two
differ in how a plain scalar is resolved (``yes``, ``on``, ``010``, ``1e3``), in tags,
aliases and merges, and in what they refuse. So the quick data is used only when nothing in it
could differ: every key and text value is one that YAML 1.1 also reads as text, the other
values are null, true/false or a date, nothing is nested deeper than ``MAX_DEPTH``, and the text
holds no tag, alias, directive, tab, unusual line break or control character. One difference is
let through: a quoted date (``"2025-07-01"``) is a date here and text in YAML 1.1, so use it only
for a model whose fields take a date either way or refuse one (the registry's ``Unit``).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from yaml.reader import Reader
from yaml.resolver import Resolver

from planflow.yaml_events import LINE_KEY, MAX_DEPTH

try:  # without it (no wheel for the platform) every file is read with lines
    import yaml_rs
except ImportError:  # pragma: no cover - the fallback is the reader with lines
    yaml_rs = None

_STR = "tag:yaml.org,2002:str"
# what YAML 1.1 reads other than text, by the first character of a plain scalar (PyYAML's table)
_NOT_TEXT = {first: tuple(rx for tag, rx in found if tag != _STR)
             for first, found in Resolver.yaml_implicit_resolvers.items() if first is not None}
# a tag (!), an alias or anchor (&, *: anchors alone are harmless, but cheap to leave to the
# reader with lines), a tab, a line break YAML 1.1 knows and 1.2 does not, a BOM past the start
_UNSURE_CHARS = "!&*\t\x85\u2028\u2029\ufeff"
# ':' right before the end of a flow item ([a:], {a:}): an empty value to YAML 1.2, an error to PyYAML
_UNSURE_TEXT = (":]", ":}", ":,")
# a YAML indicator first in a scalar: in a flow collection YAML 1.1 reads '?a' as a key, '|' or '>'
# as an error, where YAML 1.2 reads text (quoted, such a text is declined too: none is expected)
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_LOOK_AT = _INDICATORS | set(_NOT_TEXT)  # first characters of a text that needs a look
# in a flow collection YAML 1.1 ends a plain scalar at '?' and after ':' ([a:?]), where 1.2 reads
# on; a line break: a block scalar (|, >) ending the file, or empty, is chomped otherwise
_UNSURE_PARTS = re.compile(r"\?|:(?! )|[\n\r]")


def quick_load(text: str) -> dict | None:
    """The mapping a YAML text holds, without lines, when it is surely what the reader with
    lines would give (``strip_lines`` of it); None otherwise (also when the text is not a
    mapping, is not valid YAML, or has a key twice: the reader with lines says what is wrong)."""
    if yaml_rs is None or _unsure(text):
        return None
    try:
        data = yaml_rs.loads(text, parse_datetime=True,
                             alias_limits=yaml_rs.AliasLimits(max_total_replayed_events=0),
                             duplicate_key_policy=yaml_rs.DuplicateKeyPolicy.Error)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - what it refuses, even by a panic (pyo3's PanicException is a
        return None        # BaseException): the reader with lines says what is wrong
    if not isinstance(data, dict) or not _plain(data, 1, {}):
        return None
    return data


def _unsure(text: str) -> bool:
    """Does the text hold what is left to the reader with lines: ``_UNSURE_CHARS``, a directive
    (% at a line's start) or a character PyYAML refuses? (Apart: 4 ms for 1 MiB, one regex 19.)"""
    return (any(c in text for c in _UNSURE_CHARS) or any(t in text for t in _UNSURE_TEXT) or text.startswith("%")
            or "\n%" in text or "\r%" in text or Reader.NON_PRINTABLE.search(text) is not None)


def _plain(node: Any, depth: int, seen: dict) -> bool:
    """Every key and value of ``node`` as YAML 1.1 would read it, ``depth`` within the limit.
    ``seen``: the keys and texts met already, each checked once; a text met again is replaced by
    the first of its kind, as PyYAML's reader shares them (10 000 units' kinds and groups: 2 MiB)."""
    if depth > MAX_DEPTH:
        return False
    if type(node) is dict:
        for key in node:
            if key not in seen:
                if type(key) is not str or key == LINE_KEY or not _text(key):
                    return False
                seen[key] = key
        places = node.items()
    else:
        places = enumerate(node)  # a list
    for place, value in places:  # inline: one pass of the data, ~5 values a unit
        kind = type(value)
        if kind is str:
            first = seen.get(value)
            if first is None:
                if (value[:1] in _LOOK_AT or "?" in value or ":" in value or "\n" in value or "\r" in value) \
                        and not _text(value):
                    return False
                seen[value] = value
            elif first is not value:
                node[place] = first
        elif kind is dict or kind is list:
            if not _plain(value, depth + 1, seen):
                return False
        # null and booleans are written alike in 1.1 and 1.2, a date (not a moment) as YYYY-MM-DD
        elif value is not None and kind is not bool and kind is not dt.date:
            return False
    return True


def _text(value: str) -> bool:
    """Is ``value`` text in YAML 1.1 too? It is when YAML 1.1 reads it, written plain, as text; or
    when it is digits alone (a code such as '30'): written plain, ``yaml-rs`` would have given a
    number, so it was quoted, and quoted it is text in both."""
    first = value[:1]
    if first in _INDICATORS or _UNSURE_PARTS.search(value):
        return False
    found = _NOT_TEXT.get(first)
    return not found or not any(rx.match(value) for rx in found) or (value.isascii() and value.isdigit())

