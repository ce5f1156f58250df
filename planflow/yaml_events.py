"""Plain data with lines, built straight from the YAML parser's events, within limits.

One pass over the events (libyaml's parser when PyYAML has it): no node graph is built, so
a file costs about what its parsing costs, and the limits are counted as the data grows —
nesting depth, aliases and the values they stand for, an alias inside the value it names.
Every mapping is a ``LineDict`` (``key_lines``, and its first line under ``__line__``),
every list a ``LineList`` (``lines`` of its items). A key given twice in one mapping is
refused, naming the element or unit (nearest ``id`` or ``code``) it is in. Values are
what PyYAML's safe loader makes of them (YAML 1.1: ``yes`` is true, ``2022-12-10`` a date);
tags beyond the safe scalars are refused.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent, DocumentStartEvent, MappingEndEvent, MappingStartEvent, ScalarEvent, SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

LINE_KEY = "__line__"
TAG = "tag:yaml.org,2002:"
MAX_DEPTH = 40  # nesting of mappings and lists (a definition needs 7)
MAX_ALIASES = 500  # uses of *alias in one file
MAX_ALIAS_VALUES = 100_000  # values the aliases of one file stand for, all counted

_PARSER = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
_SCALARS = {TAG + t: SafeConstructor.yaml_constructors[TAG + t]
            for t in ("null", "bool", "int", "float", "binary", "timestamp")}
_MERGE = object()  # the key '<<'
_UNSEEN = object()
_MAP_TAGS = (None, "!", TAG + "map")  # the tags a mapping may have
_SEQ_TAGS = (None, "!", TAG + "seq")


class LimitError(yaml.MarkedYAMLError):
    """A file within YAML's rules but beyond planflow's (depth, aliases, a key twice, a tag);
    ``owner`` is the id or code of the element or unit the problem is in, when there is one."""

    owner: str | None = None


class LineDict(dict):
    """A mapping read from a file: ``key_lines`` gives the line each key was written on."""

    __slots__ = ("key_lines",)


class LineList(list):
    """A list read from a file: ``lines`` gives the line each item starts on."""

    __slots__ = ("lines",)


@dataclass(slots=True)
class _Frame:
    """A mapping or list being read."""

    data: Any
    mark: Any
    anchor: str | None
    size: int = 1  # values it stands for, itself included
    key: Any = None  # a mapping's key waiting for its value (None: the next scalar is a key)
    key_mark: Any = None
    has_key: bool = False
    merges: list | None = None  # (value, mark) of each '<<', made at the first
    owner: str | None = None
    is_list: bool = False


class _Builder:
    def __init__(self, dates_as_text: bool):
        self.dates_as_text = dates_as_text
        self.constructor = SafeConstructor()
        self.resolver = Resolver()
        self.tags: dict[str, str] = {}  # plain scalar -> its implicit tag
        self.plain: dict[str, Any] = {}  # plain scalar -> its value (each an immutable scalar)
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.open: set[str] = set()
        self.stack: list[_Frame] = []
        self.aliases = self.alias_values = self.documents = 0
        self.root: Any = None

    def build(self, text: str) -> Any:
        on = {AliasEvent: self.alias, MappingStartEvent: self.start, SequenceStartEvent: self.start,
              MappingEndEvent: self.end, SequenceEndEvent: self.end, DocumentStartEvent: self.document}
        scalar = self.scalar
        loader = _PARSER(text)  # its events one by one, as yaml.parse gives them, without the generator
        try:
            next_event = loader.get_event
            while (event := next_event()) is not None:
                if type(event) is ScalarEvent:  # most events: one branch, no lookup
                    scalar(event)
                else:
                    handle = on.get(type(event))
                    if handle is not None:
                        handle(event)
        finally:
            loader.dispose()
        return self.root

    # --- events ---------------------------------------------------------------------------

    def document(self, event) -> None:
        self.documents += 1
        if self.documents > 1:
            raise LimitError(None, None, "a second document (---): a file holds one", event.start_mark)

    def scalar(self, event) -> None:
        if event.tag is None and event.implicit[0]:  # a plain scalar: the same text, the same value
            value = self.plain.get(event.value, _UNSEEN)
            if value is _UNSEEN:
                value = self.plain[event.value] = self.value(event)
        else:
            value = self.value(event)
        if event.anchor is not None or not self.stack:
            self.add(value, 1, event.start_mark, event.anchor)
            return
        frame = self.stack[-1]  # what add does, inline for the most common event (a scalar is hashable)
        frame.size += 1
        if frame.is_list:
            frame.data.append(value)
            frame.data.lines.append(event.start_mark.line + 1)
        elif not frame.has_key:
            frame.key, frame.key_mark, frame.has_key = value, event.start_mark, True
        else:
            frame.has_key = False
            self.put(frame, frame.key, value, frame.key_mark)

    def alias(self, event) -> None:
        if event.anchor in self.open:
            raise LimitError(None, None, f"alias *{event.anchor} is inside the value it names (a loop)",
                             event.start_mark)
        if event.anchor not in self.anchors:
            raise LimitError(None, None, f"alias *{event.anchor} names no anchor (&{event.anchor}) above it",
                             event.start_mark)
        value, size = self.anchors[event.anchor]
        self.aliases += 1
        self.alias_values += size
        if self.aliases > MAX_ALIASES:
            raise LimitError(None, None, f"more than {MAX_ALIASES} aliases (*name) in one file", event.start_mark)
        if self.alias_values > MAX_ALIAS_VALUES:
            raise LimitError(None, None, f"aliases expand to more than {MAX_ALIAS_VALUES:,} values (write the "
                                         "values out instead)", event.start_mark)
        self.add(value, size, event.start_mark, None)

    def start(self, event) -> None:
        mapping = isinstance(event, MappingStartEvent)
        if event.tag not in (_MAP_TAGS if mapping else _SEQ_TAGS):
            raise LimitError(None, None, f"tag {_shown(event.tag)} is not used in planflow files", event.start_mark)
        if len(self.stack) >= MAX_DEPTH:
            raise LimitError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        data = LineDict() if mapping else LineList()
        if mapping:
            data.key_lines = {}
        else:
            data.lines = []
        if event.anchor is not None:
            self.open.add(event.anchor)
        self.stack.append(_Frame(data, event.start_mark, event.anchor, is_list=not mapping))

    def end(self, event) -> None:
        frame = self.stack.pop()
        data = frame.data
        if not frame.is_list:
            if frame.merges:
                self.merge(frame)
            data[LINE_KEY] = frame.mark.line + 1
        if frame.anchor is not None:
            self.open.discard(frame.anchor)
        self.add(data, frame.size, frame.mark, frame.anchor)

    # --- building ------------------------------------------------------------------------

    def add(self, value: Any, size: int, mark, anchor: str | None) -> None:
        if anchor is not None:
            self.anchors[anchor] = (value, size)
        if not self.stack:
            self.root = value
            return
        frame = self.stack[-1]
        frame.size += size
        if frame.is_list:
            frame.data.append(value)
            frame.data.lines.append(mark.line + 1)
        elif not frame.has_key:
            if not isinstance(value, Hashable):
                raise LimitError(None, None, "a key that is a mapping or a list", mark)
            frame.key, frame.key_mark, frame.has_key = value, mark, True
        else:
            frame.has_key = False
            self.put(frame, frame.key, value, frame.key_mark)

    def put(self, frame: _Frame, key: Any, value: Any, mark) -> None:
        data = frame.data
        if key is _MERGE:
            if frame.merges is None:
                frame.merges = []
            frame.merges.append((value, mark))
            return
        if key == LINE_KEY:
            raise LimitError(None, None, f"the key '{LINE_KEY}' is reserved", mark)
        if key in data:
            error = LimitError(None, None, f"key '{key}' is given twice in one mapping (first on line "
                                           f"{data.key_lines[key]}): YAML would keep only the last; keep one", mark)
            error.owner = next((f.owner for f in reversed(self.stack) if f.owner), None)
            raise error
        data[key] = value
        data.key_lines[key] = mark.line + 1
        if key in ("id", "code") and isinstance(value, str) and len(self.stack) > 1 and frame.owner is None:
            frame.owner = value  # the root mapping's id names the file, not an element

    def merge(self, frame: _Frame) -> None:
        """``<<: *defaults`` (or a list of them): their keys, unless written here or merged before."""
        for value, mark in frame.merges:
            sources = value if isinstance(value, list) else [value]
            for source in sources:
                if not isinstance(source, dict):
                    raise LimitError(None, None, "<< merges a mapping (or a list of mappings) only", mark)
                for k, v in source.items():
                    if k != LINE_KEY and k not in frame.data:
                        frame.data[k] = v
                        frame.data.key_lines[k] = getattr(source, "key_lines", {}).get(k, mark.line + 1)

    def value(self, event) -> Any:
        tag = event.tag
        if tag in (None, "!"):
            if not event.implicit[0]:
                return event.value  # quoted, or tagged '!': text
            tag = self.tags.get(event.value)
            if tag is None:
                tag = self.tags[event.value] = self.resolver.resolve(ScalarNode, event.value, (True, False))
        if tag == TAG + "str":
            return event.value
        if tag == TAG + "merge":
            return _MERGE
        if tag == TAG + "timestamp" and self.dates_as_text:
            return event.value
        construct = _SCALARS.get(tag)
        if construct is None:
            raise LimitError(None, None, f"tag {_shown(tag)} is not used in planflow files", event.start_mark)
        try:
            return construct(self.constructor, ScalarNode(tag, event.value, event.start_mark, event.end_mark))
        except (ValueError, OverflowError, yaml.YAMLError) as exc:
            raise LimitError(None, None, f"'{event.value}' is not a valid {tag.removeprefix(TAG)} ({exc})",
                             event.start_mark) from None


def _shown(tag: str) -> str:
    return "!!" + tag.removeprefix(TAG) if tag.startswith(TAG) else tag


def build(text: str, *, dates_as_text: bool = False) -> Any:
    """The data of a YAML text, lines kept; ``yaml.MarkedYAMLError`` (``LimitError`` for
    planflow's own limits) when it cannot or may not be read."""
    return _Builder(dates_as_text).build(text)
