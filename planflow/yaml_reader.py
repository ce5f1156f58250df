"""The one YAML reader: every mapping remembers the line it starts on, so errors can name it.

Definitions, registries, forms, scenarios and calendars are all read here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from planflow.problems import DefinitionError, Problem

LINE_KEY = "__line__"


class _LineLoader(yaml.SafeLoader):
    pass


class _TextDateLineLoader(_LineLoader):
    """Unquoted dates stay text, so the reader of the file can refuse a bad one with its line."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    mapping[LINE_KEY] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_TextDateLineLoader.add_constructor("tag:yaml.org,2002:timestamp",
                                    lambda loader, node: loader.construct_scalar(node))


class YamlError(ValueError):
    """A file that is missing or not YAML; ``problem`` is the parser's own words."""

    def __init__(self, path: Path, line: int, message: str, problem: str | None = None):
        self.path, self.line, self.message = path, line, message
        self.problem = problem if problem is not None else message
        super().__init__(f"{path}:{line}: {message}")


def load_with_lines(path: Path, *, dates_as_text: bool = False) -> Any:
    """Parse a YAML file; every mapping carries its first line under ``__line__``.

    ``dates_as_text`` keeps unquoted dates (``2022-12-07``) as the text written.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlError(Path(path), 0, "file not found") from None
    try:
        return yaml.load(text, Loader=_TextDateLineLoader if dates_as_text else _LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise YamlError(Path(path), line, f"not valid YAML: {exc.problem or exc}", str(exc.problem)) from None


def strip_lines(data: Any) -> Any:
    """The same data without the ``__line__`` markers."""
    if isinstance(data, dict):
        return {k: strip_lines(v) for k, v in data.items() if k != LINE_KEY}
    if isinstance(data, list):
        return [strip_lines(v) for v in data]
    return data


def line_at(data: Any, loc: tuple) -> int:
    """The line of the innermost mapping on the path ``loc`` inside ``data``."""
    line = data.get(LINE_KEY, 0) if isinstance(data, dict) else 0
    node = data
    for key in loc:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and LINE_KEY in node:
            line = node[LINE_KEY]
    return line


def line_of(node: Any) -> int:
    """The line a mapping starts on (0 when it was not read from a file)."""
    return node.get(LINE_KEY, 0) if isinstance(node, dict) else 0


def display_path(path: Path) -> str:
    """How problems name a file: relative to the working folder when it is under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_mapping(path: Path, what: str) -> tuple[dict, str]:
    """A YAML file that must hold a mapping (lines kept), and the name problems give it.

    ``what`` names the kind of file in a problem ("definition", "registry", "scenario").
    """
    file = display_path(path)
    try:
        raw = load_with_lines(path)
    except YamlError as exc:
        raise DefinitionError([Problem(file, exc.line, None, f"{what}: {exc.message}")]) from None
    if not isinstance(raw, dict):
        raise DefinitionError([Problem(file, 1, None, f"a {what} must be a YAML mapping")])
    return raw, file
