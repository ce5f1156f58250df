"""Render notification templates and check them.

Each kind has three files in ``notifications/templates/`` (or in a definition's own
``template_dir``, which overrides the package files of the same name):

* ``<kind>.subject.j2`` - one line (whitespace is collapsed),
* ``<kind>.txt.j2``     - plain text,
* ``<kind>.html.j2``    - HTML, autoescaped.

Context contract (other code builds these contexts)
---------------------------------------------------
Every kind gets ``plan``, ``recipient``, ``sent_at`` and ``sender``:

* ``plan``: ``kind`` (e.g. "KẾ HOẠCH"), ``title`` (the trích yếu, without the kind: "Triển
  khai thực hiện …"), ``number`` (str/int or None -> "…/KH-UBND"), ``issued_on`` (date or
  None), ``issuer``, ``place``, ``signer`` {``line1``, ``line2``, ``name``}, ``basis``,
  ``tasks`` (list of str), ``recipients`` (list of str, Nơi nhận), ``words`` (what depends on
  the plan, from its registry's root and its definition: ``level`` "tỉnh" | "thành phố",
  ``ubnd`` "UBND tỉnh" | "UBND thành phố", ``party`` "Tỉnh ủy" | "Thành ủy", ``province``
  (its name or None), ``party_body`` ("Thành ủy Hải Phòng"), ``issuer``, ``coordinator`` (who
  aggregates), ``reviewers`` and ``report_to`` (names), ``subject`` (the plan's trích yếu));
* ``recipient``: ``code``, ``name``, ``head`` (or None), ``email``;
* ``sent_at``: tz-aware datetime; ``sender``: the body that signs the letter, {``name``}
  and, for a body of the registry, ``code``, ``head``, ``email`` (the e-mail's From).

Per kind, in addition (``submit_to`` is where the unit's results go: {``name``, ``via``
(the body they go through, or None)}: "UBND tỉnh Hải Dương (qua Sở Nội vụ)", or a
commune's own district):

* ``dissemination``: ``due`` (the plan's deadline), ``issued_here`` (the sender issued the
  plan), ``duties`` (names of the recipient's tasks in the plan, may be empty), ``report``
  ({``due``, ``submit_to``} of the recipient's own report, or None: not asked to report);
* ``reminder``: ``task`` {``name``}, ``due``, ``submit_to``, ``working_days_left``, ``unit``;
* ``overdue``: ``task``, ``due``, ``submit_to``, ``unit``, ``working_days_overdue``, ``level``;
* ``escalation-1`` / ``escalation-2`` / ``escalation-final``: ``task``, ``due``, ``submit_to``,
  ``level``, ``internal`` (the letter goes to the head of the body that signs it),
  ``units`` (list of {``name``, ``code``, ``due``, ``working_days_overdue``});
* ``review-request`` / ``report-upward``: ``round``, ``counts`` {``expected``, ``on_time``,
  ``late``, ``missing``}, ``classes`` (label -> count), ``report_name`` (the report's trích
  yếu, "Kết quả đánh giá, xếp loại …"), ``report_to`` and ``reviewers`` (names);
* ``review-result``: ``decision`` ("approve" | "return"), ``comment`` (str or None), ``round``,
  ``report_name``, ``report_to``, ``reviewers``;
* ``incident``: ``incident`` {``step``, ``flow_run``, ``state``, ``message``} — to the
  operators at Sở Nội vụ when a run of a plan deployment failed or crashed;
* ``publication``: ``results`` (list of {``name``, ``score`` (float or None),
  ``classification``}), ``counts``, ``report_name``, ``report_to``, ``reviewers``;
* ``link``: ``unit``, ``task`` {``name``}, ``due`` (or None), ``generation``, ``link``: a new link,
  ``link_purpose`` (None for a unit's report; a reviewer's: "xem báo cáo và gửi ý kiến thẩm định");
* ``receipt`` (to a unit that reported through its link): ``unit``, ``task``, ``due``, ``received_at``
  (the server's time), ``late``, ``total``, ``receipt`` {``number``, ``file`` {``name``, ``sha256``}}.
Optional ``link`` ("<PLANFLOW_PORTAL_URL>/u/<token>"): the recipient's personal link to its self-evaluation,
added on delivery (``flows/delivery.py``, portal configured); the layouts show it (``personal_link``).

Filters available to templates: ``vn_date``, ``vn_datetime``, ``doc_number``, ``lcfirst``,
``in_text``, ``vn_number`` (see ``notifications/_filters.py`` and ``notifications/vn_format.py``).
Macros shared by the templates (``_common.txt.j2`` / ``_common.html.j2``): ``plan_ref`` (a
document reference as an official writes it: "Kế hoạch số …/KH-UBND của UBND tỉnh Hải Dương
về triển khai …"), ``own_ref`` (the same, by its issuer), ``submit_to``, ``addressee``.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes

from ._filters import FILTERS
from ._samples import SAMPLE_CONTEXTS
from .template_cache import compiled_templates

__all__ = [
    "KINDS",
    "SAMPLE_CONTEXTS",
    "PACKAGE_TEMPLATE_DIR",
    "Message",
    "TemplateError",
    "TemplateProblem",
    "check_template",
    "render",
    "template_files",
]

PACKAGE_TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

KINDS: tuple[str, ...] = (
    "dissemination",
    "reminder",
    "overdue",
    "escalation-1",
    "escalation-2",
    "escalation-final",
    "review-request",
    "report-upward",
    "review-result",
    "incident",
    "publication",
    "link",
    "receipt",
)

_PARTS = ("subject", "txt", "html")

assert set(SAMPLE_CONTEXTS) == set(KINDS), "a sample context is needed for every kind"


@dataclass(frozen=True)
class Message:
    """A rendered notification, ready for a channel."""

    kind: str
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class TemplateProblem:
    """Something wrong in one template file, said in plain words."""

    template: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.template if self.line is None else f"{self.template}, line {self.line}"
        return f"{where}: {self.message}"


class TemplateError(Exception):
    """A notification could not be rendered. ``problems`` says where and why."""

    def __init__(self, message: str, problems: list[TemplateProblem] | None = None):
        super().__init__(message)
        self.problems: list[TemplateProblem] = list(problems or [])


def template_files(kind: str) -> tuple[str, str, str]:
    """The three file names of a kind: subject, plain text, HTML."""
    return tuple(f"{kind}.{part}.j2" for part in _PARTS)  # type: ignore[return-value]


def _require_kind(kind: str) -> None:
    if kind not in KINDS:
        raise TemplateError(
            f"unknown notification kind {kind!r}; the known kinds are: {', '.join(KINDS)}"
        )


@functools.lru_cache(maxsize=32)
def _environment_for(template_dir: str | None) -> jinja2.Environment:
    search = [str(PACKAGE_TEMPLATE_DIR)]
    if template_dir is not None:
        search.insert(0, template_dir)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search, encoding="utf-8"),
        bytecode_cache=compiled_templates("letters"),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env


def _environment(template_dir: str | os.PathLike[str] | None) -> jinja2.Environment:
    if template_dir is None:
        return _environment_for(None)
    path = Path(template_dir).resolve()
    if not path.is_dir():
        raise TemplateError(f"template_dir {str(template_dir)!r} is not a directory")
    return _environment_for(str(path))


def render(
    kind: str, context: Mapping[str, Any], *, template_dir: str | os.PathLike[str] | None = None
) -> Message:
    """Render the subject, text and HTML of ``kind`` with ``context``.

    Raises :class:`TemplateError` for an unknown kind, a missing or broken template,
    or a context that lacks what a template uses (the message names file and line).
    """
    _require_kind(kind)
    env = _environment(template_dir)
    context = dict(context)
    rendered: dict[str, str] = {}
    for part, name in zip(_PARTS, template_files(kind)):
        try:
            rendered[part] = env.get_template(name).render(context)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a located problem
            problem = _problem_from_exception(exc, name, env, context)
            raise TemplateError(f"cannot render {kind!r}: {problem}", [problem]) from exc
    subject = " ".join(rendered["subject"].split())
    if not subject:
        problem = TemplateProblem(template_files(kind)[0], None, "the subject is empty")
        raise TemplateError(f"cannot render {kind!r}: {problem}", [problem])
    text = rendered["txt"].rstrip() + "\n"
    return Message(kind=kind, subject=subject, text=text, html=rendered["html"])


def check_template(
    kind: str, *, template_dir: str | os.PathLike[str] | None = None
) -> list[TemplateProblem]:
    """Compile the three files of ``kind`` and render them with ``SAMPLE_CONTEXTS[kind]``.

    Returns the problems found (an empty list when all is well); never raises for a
    template fault. Names used but not given are found statically (all of them, with
    their lines); the sample render then finds the rest (a missing key of a dict, a
    filter given a wrong value, an error in an included or extended file).
    """
    _require_kind(kind)
    env = _environment(template_dir)
    sample = SAMPLE_CONTEXTS[kind]
    problems: list[TemplateProblem] = []
    for name in template_files(kind):
        found: list[TemplateProblem] = []
        try:
            source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
            found.extend(_undeclared_names(env, source, name, sample))
            env.get_template(name).render(copy.deepcopy(sample))
        except Exception as exc:  # noqa: BLE001
            problem = _problem_from_exception(exc, name, env, sample)
            if not any(p.line == problem.line and p.template == problem.template
                       and _undefined_name(problem.message) == _undefined_name(p.message)
                       for p in found):
                found.append(problem)
        problems.extend(found)
    return problems


# --- locating problems -------------------------------------------------------------

_UNDEFINED_RE = re.compile(r"^'([^']+)' is undefined")
_NO_ATTR_RE = re.compile(r"^'(.+?)' has no attribute '([^']+)'$")


def _undefined_name(message: str) -> str | None:
    match = _UNDEFINED_RE.match(message)
    return match.group(1) if match else None


def _available(context: Mapping[str, Any]) -> str:
    return ", ".join(sorted(context)) or "(none)"


def _undeclared_names(
    env: jinja2.Environment, source: str, name: str, context: Mapping[str, Any]
) -> list[TemplateProblem]:
    """Top-level names a template reads that neither the context nor jinja2 provides."""
    try:
        ast = env.parse(source, name=name)
        undeclared = meta.find_undeclared_variables(ast)
    except jinja2.TemplateSyntaxError:
        return []  # reported, with its line, when the template is compiled
    missing = undeclared - _declared_names(ast) - set(context) - set(env.globals)
    problems = []
    seen: set[tuple[str, int]] = set()
    for node in ast.find_all(nodes.Name):
        if node.name in missing and node.ctx == "load" and (node.name, node.lineno) not in seen:
            seen.add((node.name, node.lineno))
            problems.append(TemplateProblem(name, node.lineno, _undefined_message(node.name, context)))
    return problems


def _declared_names(ast: nodes.Template) -> set[str]:
    """Names a template declares anywhere (imports, set, for, macros and their arguments).

    ``find_undeclared_variables`` treats blocks of a child template on their own, so a
    top-level ``{% import ... as c %}`` looks undeclared inside them; a name declared
    anywhere is left to the sample render to judge.
    """
    declared = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    declared |= {n.target for n in ast.find_all(nodes.Import)}
    for node in ast.find_all(nodes.FromImport):
        declared |= {alias if isinstance(alias, str) else alias[-1] for alias in node.names}
    declared |= {n.name for n in ast.find_all(nodes.Macro)}
    return declared


def _undefined_message(variable: str, context: Mapping[str, Any]) -> str:
    return (
        f"'{variable}' is undefined: the variables available to this template are: "
        f"{_available(context)}"
    )


def _template_frames(exc: BaseException) -> list[tuple[str, int]]:
    """(file name, line) of the template frames in a traceback, outermost first.

    jinja2 rewrites tracebacks so that template code appears with the template's
    file name and line.
    """
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            frames.append((os.path.basename(filename), tb.tb_lineno))
        tb = tb.tb_next
    return frames


def _problem_from_exception(
    exc: BaseException, name: str, env: jinja2.Environment, context: Mapping[str, Any]
) -> TemplateProblem:
    if isinstance(exc, jinja2.TemplateNotFound):
        missing = exc.name or name
        looked = ", ".join(getattr(env.loader, "searchpath", []) or [])
        return TemplateProblem(str(missing), None, f"template file not found (looked in: {looked})")
    if isinstance(exc, jinja2.TemplateSyntaxError):
        template = os.path.basename(exc.filename) if exc.filename else (exc.name or name)
        message = f"syntax error: {exc.message}"
        if exc.message and exc.message.startswith("No filter named"):
            message += f" The filters added by planflow are: {', '.join(sorted(FILTERS))}."
        return TemplateProblem(template, exc.lineno, message)

    frames = _template_frames(exc)
    template, line = frames[-1] if frames else (name, None)
    if isinstance(exc, jinja2.UndefinedError):
        message = _explain_undefined(exc, template, line, env, context)
    else:
        message = f"{type(exc).__name__}: {exc}"
    if template != name:
        calls = [f"{f}, line {n}" for f, n in frames if f == name]
        if calls:
            message += f" (reached from {calls[-1]})"
    return TemplateProblem(template, line, message)


def _explain_undefined(
    exc: jinja2.UndefinedError,
    template: str,
    line: int | None,
    env: jinja2.Environment,
    context: Mapping[str, Any],
) -> str:
    text = exc.message or str(exc)
    variable = _undefined_name(text)
    if variable is not None:
        return _undefined_message(variable, context)
    match = _NO_ATTR_RE.match(text)
    if match is None:
        return f"{text}: the variables available to this template are: {_available(context)}"
    attribute = match.group(2)
    owner, keys = _find_owner(env, template, line, attribute, context)
    if owner is not None and keys is not None:
        return (
            f"'{owner}' has no key or attribute '{attribute}': the keys of '{owner}' are: "
            f"{', '.join(keys) or '(none)'}"
        )
    if owner is not None:
        return (
            f"'{owner}' has no key or attribute '{attribute}'; the variables available "
            f"to this template are: {_available(context)}"
        )
    return (
        f"a value has no key or attribute '{attribute}' ({text}); the variables available "
        f"to this template are: {_available(context)}"
    )


def _find_owner(
    env: jinja2.Environment,
    template: str,
    line: int | None,
    attribute: str,
    context: Mapping[str, Any],
) -> tuple[str | None, list[str] | None]:
    """Best effort: find ``a.b.<attribute>`` on the line and list the keys of ``a.b``."""
    if line is None:
        return None, None
    try:
        source, _, _ = env.loader.get_source(env, template)  # type: ignore[union-attr]
    except jinja2.TemplateNotFound:
        return None, None
    lines = source.splitlines()
    if not 0 < line <= len(lines):
        return None, None
    match = re.search(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\." + re.escape(attribute) + r"\b", lines[line - 1])
    if match is None:
        return None, None
    path = match.group(1)
    value: Any = context
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return path, None
    if isinstance(value, Mapping):
        return path, sorted(map(str, value))
    return path, None
