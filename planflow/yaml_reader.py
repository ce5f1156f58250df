"""The one YAML reader: every mapping remembers the line it starts on, so errors can name it.

Definitions, registries, forms, scenarios and calendars are all read here, within limits,
so that no file can exhaust memory or time: a size per kind of file (``MAX_BYTES``), and
while it is read (``planflow.yaml_events``) a nesting depth and a number of aliases and of
values they stand for. A file must be a regular file of UTF-8 text; a key given twice in one
mapping is refused (YAML would keep the last).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
import yaml.reader

from planflow.problems import DefinitionError, Problem
from planflow.yaml_events import LINE_KEY, LimitError, LineDict, LineList, build

__all__ = ["LINE_KEY", "LineDict", "LineList", "MAX_BYTES", "YamlError", "display_path", "line_at", "line_of",
           "line_of_key", "load_mapping", "load_with_lines", "read_file", "read_text", "strip_lines"]

MIB = 1024 * 1024
MAX_BYTES = {"registry": 4 * MIB}  # a registry lists every unit (10 000 units: 1.1 MiB)
DEFAULT_MAX_BYTES = 2 * MIB  # a definition, form, scenario or calendar (the shipped plan: 12 KiB)


class YamlError(ValueError):
    """A file that cannot be read as YAML; ``problem`` is the parser's own words, ``line`` 0
    when the problem is the whole file."""

    def __init__(self, path: Path, line: int, message: str, problem: str | None = None):
        self.path, self.line, self.message = path, line, message
        self.problem = problem if problem is not None else message
        self.owner: str | None = None  # the element or unit the line belongs to, when known
        super().__init__(f"{path}:{line}: {message}")


def read_text(path: Path, limit: int = DEFAULT_MAX_BYTES) -> str:
    """The UTF-8 text of a regular file no larger than ``limit`` bytes; ``YamlError`` otherwise.

    The file is opened without waiting (a pipe or a device is refused, not read) and checked
    on what was opened, so it cannot change into something else in between."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise YamlError(path, 0, "file not found") from None
    except IsADirectoryError:
        raise YamlError(path, 0, "is a folder, not a file") from None
    except OSError as exc:
        raise YamlError(path, 0, f"cannot be read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise YamlError(path, 0, "is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise YamlError(path, 0, "is not a regular file (a device, a pipe or a socket?)")
        if info.st_size > limit:
            raise YamlError(path, 0, f"is {info.st_size / MIB:.1f} MiB: larger than the {limit / MIB:g} MiB "
                                     "planflow reads in such a file")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise YamlError(path, 0, f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise YamlError(path, 0, f"is larger than the {limit / MIB:g} MiB planflow reads in such a file")
    return decode(path, data)


def decode(path: Path, data: bytes) -> str:
    """Text from UTF-8 bytes (a BOM is dropped); a binary or otherwise encoded file is refused by line."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise YamlError(path, data.count(b"\n", 0, nul) + 1, "a binary file (it holds NUL bytes), not YAML text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlError(path, line, f"not UTF-8 text (byte 0x{data[exc.start]:02X}): save the file as UTF-8") \
            from None


def load_with_lines(path: Path, *, dates_as_text: bool = False, limit: int = DEFAULT_MAX_BYTES,
                    rewrite: Callable[[str], str] | None = None, text: str | None = None) -> Any:
    """Parse a YAML file; every mapping carries its first line under ``__line__``.

    ``dates_as_text`` keeps unquoted dates (``2022-12-07``) as the text written; ``rewrite``
    changes the text before it is parsed, line for line (a plan's ``{year}``); ``text`` is the
    file's text when it was read already (``read_text``).
    """
    if text is None:
        text = read_text(path, limit)
    if rewrite is not None:
        text = rewrite(text)
    try:
        return build(text, dates_as_text=dates_as_text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        said = "; ".join(str(x) for x in (exc.context, exc.problem) if x) or str(exc)
        message = exc.problem if isinstance(exc, LimitError) else f"not valid YAML: {said}"
        error = YamlError(Path(path), line, message, str(exc.problem))
        error.owner = getattr(exc, "owner", None)
        raise error from None
    except yaml.reader.ReaderError as exc:  # a control character: located by its position in the text
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else 0
        raise YamlError(Path(path), line, f"not valid YAML: character #x{exc.character:04x} is not allowed "
                                          "(a control character)" if isinstance(exc.character, int) else
                                          f"not valid YAML: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise YamlError(Path(path), 0, f"not valid YAML: {str(exc).splitlines()[0] if str(exc) else exc}") from None


def strip_lines(data: Any) -> Any:
    """The same data without the ``__line__`` markers."""
    if isinstance(data, dict):
        return {k: strip_lines(v) for k, v in data.items() if k != LINE_KEY}
    if isinstance(data, list):
        return [strip_lines(v) for v in data]
    return data


def line_at(data: Any, loc: tuple) -> int:
    """The line of what the path ``loc`` (keys and list indexes) leads to inside ``data``:
    the line of its key or list item, or of the innermost mapping on the way there."""
    line = line_of(data)
    node = data
    for key in loc:
        here = line_of_key(node, key)
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
        line = here or line_of(node) or line
    return line


def line_of(node: Any) -> int:
    """The line a mapping starts on (0 when it was not read from a file)."""
    return node.get(LINE_KEY, 0) if isinstance(node, dict) else 0


def line_of_key(node: Any, key: Any) -> int:
    """The line ``key`` was written on in a mapping, or item ``key`` of a list starts on (0: unknown)."""
    if isinstance(node, LineDict):
        return getattr(node, "key_lines", {}).get(key, 0)
    if isinstance(node, LineList) and isinstance(key, int) and 0 <= key < len(getattr(node, "lines", ())):
        return node.lines[key]
    return 0


def display_path(path: Path) -> str:
    """How problems name a file: relative to the working folder when it is under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError, RuntimeError):
        return str(path)


def read_file(path: Path, what: str) -> str:
    """The text of a file of the kind ``what`` (its size limit: ``MAX_BYTES``), for ``load_mapping``'s
    ``text``; ``DefinitionError`` as ``load_mapping`` gives when it cannot be read."""
    try:
        return read_text(path, MAX_BYTES.get(what, DEFAULT_MAX_BYTES))
    except YamlError as exc:
        raise _unreadable(display_path(path), what, exc) from None


def load_mapping(path: Path, what: str, rewrite: Callable[[str], str] | None = None,
                 text: str | None = None) -> tuple[dict, str]:
    """A YAML file that must hold a mapping (lines kept), and the name problems give it.

    ``what`` names the kind of file in a problem ("definition", "registry", "scenario");
    it also sets the size limit (``MAX_BYTES``). ``text``: the file's text, read already (``read_file``).
    """
    file = display_path(path)
    try:
        raw = load_with_lines(path, limit=MAX_BYTES.get(what, DEFAULT_MAX_BYTES), rewrite=rewrite, text=text)
    except YamlError as exc:
        raise _unreadable(file, what, exc) from None
    if not isinstance(raw, dict):
        raise DefinitionError([Problem(file, 1, None, f"a {what} must be a YAML mapping (key: value lines), "
                                                      f"not {_kind_of(raw)}")])
    return raw, file


def _unreadable(file: str, what: str, exc: YamlError) -> DefinitionError:
    kind = {"registry": "unit", "form": "criterion"}.get(what, "element")
    return DefinitionError([Problem(file, exc.line, exc.owner, f"{what}: {exc.message}", kind)])


def _kind_of(value: Any) -> str:
    if value is None:
        return "an empty file"
    if isinstance(value, list):
        return "a list"
    return "a single value"
