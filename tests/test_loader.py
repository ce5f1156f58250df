"""Loading and validating process definitions (planflow/loader.py) and `planflow validate`.

Every broken definition is the shipped plan's text with one thing changed, written into
``tmp_path`` with its ``registry:`` and ``forms:`` pointing back at the real files by
absolute path (so line numbers stay those of the shipped plan). Each must be refused with
a Problem that names the file, the line of the element at fault and the element's id.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from planflow import DefinitionError, load_plan
from tests.conftest import PLAN, REPO

SHIPPED_TEXT = PLAN.read_text(encoding="utf-8")
SHIPPED_RAW = yaml.safe_load(SHIPPED_TEXT)
SHIPPED_REGISTRY = PLAN.parent / SHIPPED_RAW["registry"]


def _absolute_refs(text: str, registry: Path) -> str:
    """The plan's text with its registry and form paths made absolute (same line count)."""
    base = PLAN.parent
    out = text.replace(f"registry: {SHIPPED_RAW['registry']}\n", f"registry: {registry}\n", 1)
    for form_id, rel in SHIPPED_RAW["forms"].items():
        out = out.replace(f"  {form_id}: {rel}\n", f"  {form_id}: {base / rel}\n", 1)
    assert f"registry: {registry}\n" in out, "could not re-point the registry"
    assert all(f"  {f}: {base / rel}\n" in out for f, rel in SHIPPED_RAW["forms"].items()), \
        "could not re-point the forms"
    return out


@pytest.fixture(scope="session")
def small_registry(tmp_path_factory) -> Path:
    """The shipped registry with every group and provincial unit but only a few communes.

    Validation does not depend on how many communes there are, and the 525-unit registry
    takes most of a load's time (pure-Python YAML), so the many broken variants use this.
    """
    raw = yaml.safe_load(SHIPPED_REGISTRY.read_text(encoding="utf-8"))
    communes = [u for u in raw["units"] if "communes" in (u.get("groups") or [])]
    raw["units"] = [u for u in raw["units"] if "communes" not in (u.get("groups") or [])] + communes[:5]
    path = tmp_path_factory.mktemp("registry") / "hai-duong-2022-small.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def write_variant(tmp_path, small_registry):
    return lambda edits, name="broken.yaml", registry=small_registry: _write_variant(
        tmp_path, edits, name, registry)


def _write_variant(tmp_path: Path, edits: list[tuple[str, str]], name: str, registry: Path) -> tuple[Path, str]:
    """Copy the shipped plan into tmp_path, applying each (old, new) edit exactly once."""
    text = _absolute_refs(SHIPPED_TEXT, registry)
    for old, new in edits:
        assert text.count(old) == 1, f"edit anchor must occur exactly once: {old!r}"
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path, text


def line_of(text: str, needle: str) -> int:
    """1-based number of the only line of ``text`` that contains ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def refused(path: Path) -> list:
    with pytest.raises(DefinitionError) as info:
        load_plan(path)
    problems = info.value.problems
    assert problems, "DefinitionError without problems"
    return problems


def same_file(problem, path: Path) -> bool:
    return Path(problem.file).resolve() == path.resolve()


# --- the shipped plan ------------------------------------------------------------------


def test_shipped_plan_loads_with_its_registry_forms_and_calendar(plan):
    d = plan.definition
    assert plan.id == "hai-duong-dan-van-2022"
    assert d.year == 2022
    assert set(plan.forms) == {"self-evaluation", "review-decision", "report-revision"}
    assert len(plan.registry.group("departments")) == 18
    assert len(plan.registry.group("districts")) == 12
    assert len(plan.registry.group("communes")) == 235
    assert len(plan.registry.group("recipients")) == 40
    assert [p.id for p in d.subprocesses] == ["district-cycle"]
    main_ids = [e.id for e in d.main.elements]
    assert main_ids[0] == "start" and main_ids[-1] == "end"
    assert {"disseminate", "department_self_evaluation", "district_cycle", "join", "aggregate",
            "review", "review_gateway", "revise", "reaggregate", "publish"} <= set(main_ids)
    # elements carry the line they start on in the file
    assert d.main.element("disseminate").line == line_of(SHIPPED_TEXT, "- id: disseminate ")
    # "trước ngày 10/12/2022" (a Saturday) is the end of Friday 9/12 on the plan's calendar
    due = plan.calendar.resolve_due({"before": "2022-12-10"})
    assert due.isoformat() == "2022-12-09T23:59:59+07:00"


def test_a_faithful_copy_elsewhere_loads_too(write_variant, small_registry, plan):
    """The harness itself: copies with absolute registry/forms paths are accepted."""
    path, _ = write_variant([], name="copy.yaml", registry=SHIPPED_REGISTRY)
    copy = load_plan(path)
    assert copy.path == path.resolve()
    assert copy.definition.elements == plan.definition.elements  # same lines too
    assert copy.definition.subprocesses == plan.definition.subprocesses
    assert copy.registry == plan.registry and copy.forms == plan.forms
    small = load_plan(write_variant([], name="small.yaml")[0])
    assert small.registry.group_names == plan.registry.group_names
    assert len(small.registry.group("departments")) == 18


# --- each kind of broken definition ----------------------------------------------------

# (case id, edits, element at fault, text on the line the problem must name, words in the message)
BROKEN = [
    pytest.param(
        [("    handler: aggregate\n    next: report_upward\n", "    handler: aggregate\n    next: report_upwards\n")],
        "aggregate", "- id: aggregate ", ["'report_upwards' is not an element", "report_upward"],
        id="unknown-next"),
    pytest.param(
        [("    type: endEvent\n\nsubprocesses:",
          "    type: endEvent\n\n  - id: orphan_step\n    type: serviceTask\n    stage: publication\n"
          "    handler: record\n    next: end\n\nsubprocesses:")],
        "orphan_step", "- id: orphan_step", ["unreachable", "'start'"],
        id="unreachable-element"),
    pytest.param(
        [("    default: publish\n", "")],
        "review_gateway", "- id: review_gateway", ["exclusiveGateway needs a 'default'"],
        id="exclusive-without-default"),
    pytest.param(
        [("    handler: aggregate\n    next: request_review\n", "    handler: aggregate\n    next: sync\n"),
         ("    to: recipients\n    next: end\n",
          "    to: recipients\n    next: sync\n\n  - id: sync\n    type: parallelGateway\n    next: end\n")],
        "sync", "- id: sync", ["can never complete", "review_gateway", "publish", "revise"],
        id="join-of-one-exclusive-split"),
    pytest.param(
        [("    for_each: departments\n", "    for_each: departmens\n")],
        "department_self_evaluation", "- id: department_self_evaluation",
        ["unknown registry group 'departmens'", "departments"],
        id="unknown-for-each-group"),
    pytest.param(
        [("    form: review-decision\n", "    form: review-decisions\n")],
        "review", "- id: review ", ["unknown form 'review-decisions'", "review-decision"],
        id="unknown-form"),
    pytest.param(
        [("    template: publication\n", "    template: publikation\n")],
        "publish", "- id: publish ", ["unknown template 'publikation'", "publication"],
        id="unknown-template"),
    pytest.param(
        [("      - {after: +3wd, to: [ban-dan-van-tinh-uy, pct-ubnd-tinh], template: escalation-2}\n"
          "      - {after: +5wd, to: [so-noi-vu, pct-ubnd-tinh], template: escalation-final}\n    boundary:\n"
          "      - {id: department_reports_closed",
          "      - {after: +3wd, to: [ban-dan-van-tinh-uy, pct-ubnd-tinh], template: escalation-9}\n"
          "      - {after: +5wd, to: [so-noi-vu, pct-ubnd-tinh], template: escalation-final}\n    boundary:\n"
          "      - {id: department_reports_closed")],
        # an escalation's problem points at the escalation's own line
        "department_self_evaluation", "template: escalation-9", ["unknown template 'escalation-9'"],
        id="unknown-escalation-template"),
    pytest.param(
        [("\n    reminders: [-5wd, -2wd, -1wd]\n    escalations:\n      - {after: +1wd, to: [unit.head, so-noi-vu]",
          "\n    reminders: [5x, -2wd, -1wd]\n    escalations:\n      - {after: +1wd, to: [unit.head, so-noi-vu]")],
        "department_self_evaluation", "- id: department_self_evaluation", ["reminder '5x'", "+Nwd"],
        id="bad-reminder-duration"),
    pytest.param(
        [('\n    due: {before: "2022-12-10"}\n', '\n    due: {before: "2022-02-30"}\n')],
        "department_self_evaluation", "- id: department_self_evaluation", ["due:", "2022-02-30"],
        id="bad-due-date"),
    pytest.param(
        [("\n    handler: record\n    next: join\n", "\n    handler: recrod\n    next: join\n")],
        "guide_and_monitor", "- id: guide_and_monitor", ["unknown handler 'recrod'", "record"],
        id="unknown-handler"),
    pytest.param(
        [("    handler: aggregate\n    next: report_upward\n", "    handler: aggregate\n    nxt: report_upward\n")],
        # a problem with one field points at that field's own line
        "aggregate", "    nxt: report_upward", ["unknown field 'nxt'"],
        id="unknown-field-typo"),
]


@pytest.mark.parametrize(("edits", "element", "line_text", "words"), BROKEN)
def test_broken_definition_is_refused_naming_file_line_and_element(write_variant, edits, element, line_text, words):
    path, text = write_variant(edits)
    problems = refused(path)
    expected_line = line_of(text, line_text)
    assert {p.element for p in problems} == {element}, [str(p) for p in problems]
    p = next(p for p in problems if p.line == expected_line)
    assert same_file(p, path), p.file
    for w in words:
        assert w in p.message, p.message
    # the printed form is what a user reads: file:line, element id, the message
    assert str(p).startswith(f"{p.file}:{expected_line}:")
    assert f"element '{element}'" in str(p)


def test_invalid_yaml_is_refused_with_the_line_of_the_error(write_variant):
    # one line of the `revise` element indented by three spaces instead of four
    path, text = write_variant([(
        "    type: userTask\n    name: Sở Nội vụ bổ sung",
        "    type: userTask\n   name: Sở Nội vụ bổ sung")])
    problems = refused(path)
    assert len(problems) == 1
    p = problems[0]
    assert same_file(p, path)
    assert p.line == line_of(text, "   name: Sở Nội vụ bổ sung")
    assert "not valid YAML" in p.message
    assert str(p).startswith(f"{p.file}:{p.line}:")


def test_every_problem_is_reported_at_once(write_variant):
    """Nothing is half-loaded, and the user sees every problem in one go, not the first."""
    path, text = write_variant([
        ("    template: publication\n", "    template: publikation\n"),
        ("\n    handler: record\n    next: join\n", "\n    handler: recrod\n    next: join\n"),
    ])
    problems = refused(path)
    assert {(p.element, p.line) for p in problems} == {
        ("publish", line_of(text, "- id: publish ")),
        ("guide_and_monitor", line_of(text, "- id: guide_and_monitor")),
    }


def test_a_missing_registry_names_the_registry_file(write_variant):
    path, text = write_variant([])
    text = re.sub(r"registry: .*\n", "registry: registries/nowhere.yaml\n", text, count=1)
    path.write_text(text, encoding="utf-8")
    problems = refused(path)
    # a file that cannot be read at all is said at the definition's line that names it
    assert [(p.file, p.line) for p in problems] == [(str(path), line_of(text, "registry: registries/nowhere.yaml"))]
    assert "nowhere.yaml" in problems[0].message and "file not found" in problems[0].message


def test_join_fed_from_downstream_of_itself_is_refused(write_variant):
    path, text = write_variant([
        ("    handler: aggregate\n    next: request_review\n", "    handler: aggregate\n    next: join\n")])
    problems = refused(path)
    assert any(p.element == "join" and p.line == line_of(text, "- id: join") for p in problems)


# --- the CLI ---------------------------------------------------------------------------


def _validate(path: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "planflow.flows.cli", "validate", str(path)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("edits", "element", "line_text"), [
    pytest.param([("    handler: aggregate\n    next: report_upward\n",
                   "    handler: aggregate\n    next: report_upwards\n")],
                 "aggregate", "- id: aggregate ", id="unknown-next"),
    pytest.param([("    type: userTask\n    name: Sở Nội vụ bổ sung",
                   "    type: userTask\n   name: Sở Nội vụ bổ sung")],
                 None, "   name: Sở Nội vụ bổ sung", id="invalid-yaml"),
])
def test_cli_validate_refuses_with_file_line_and_element_and_no_traceback(tmp_path, write_variant, edits, element, line_text):
    path, text = write_variant(edits)
    result = _validate(path, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    line = line_of(text, line_text)
    assert re.search(rf"(^|[\s/]){re.escape(path.name)}:{line}:", result.stderr), result.stderr
    if element:
        assert f"'{element}'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "OK" not in result.stdout


def test_cli_validate_accepts_the_shipped_plan():
    result = _validate(PLAN, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "hai-duong-dan-van-2022" in result.stdout
    assert result.stderr.strip() == ""


def test_cli_validate_warns_of_a_year_without_an_official_days_off_notice(tmp_path):
    """A 2023 plan: the calendar's data for 2023 lacks the official notices (Tết, 30/4, 2/9)
    and falls back on the holidays package; validate says so, with the calendar's file and
    line, and --strict fails."""
    text = SHIPPED_TEXT.replace("year: 2022\n", "year: 2023\n").replace('"2022-12-10"', '"2023-12-10"')
    path = tmp_path / "plan-2023.yaml"
    path.write_text(_absolute_refs(text, SHIPPED_REGISTRY), encoding="utf-8")
    warned = _validate(path, cwd=tmp_path)
    assert warned.returncode == 0, warned.stderr
    assert "WARNING" in warned.stderr and "năm 2023" in warned.stderr
    assert re.search(r"vn-civil-service\.yaml:\d+: năm 2023", " ".join(warned.stderr.split())), warned.stderr
    strict = subprocess.run([sys.executable, "-m", "planflow.flows.cli", "validate", "--strict", str(path)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert strict.returncode == 1 and "năm 2023" in strict.stderr and "OK" not in strict.stdout


def test_a_wrong_store_url_is_a_clear_error_not_a_traceback():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "planflow.flows.cli", "status", "--db", "notaurl://x"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "cannot open the store 'notaurl://x'" in done.stderr
    assert "Traceback" not in done.stderr


# --- the reader ------------------------------------------------------------------------


def test_the_reader_gives_what_pyyaml_gives_for_every_shipped_file():
    from planflow.yaml_reader import load_with_lines, strip_lines

    for path in sorted((REPO / "definitions").rglob("*.yaml")):
        assert strip_lines(load_with_lines(path)) == yaml.safe_load(path.read_text(encoding="utf-8")), path


def test_merge_keys_are_not_keys_given_twice(tmp_path):
    from planflow.yaml_reader import LINE_KEY, load_with_lines

    path = tmp_path / "merge.yaml"
    path.write_text("ladder: &ladder {after: +1wd, template: escalation-1}\n"
                    "first:\n  <<: *ladder\n  after: +3wd\n"
                    "both:\n  <<: [{a: 1, b: 1}, {b: 2, c: 2}]\n", encoding="utf-8")
    data = load_with_lines(path)
    assert data["first"] == {"after": "+3wd", "template": "escalation-1", LINE_KEY: 3}
    assert {k: v for k, v in data["both"].items() if k != LINE_KEY} == {"a": 1, "b": 1, "c": 2}
    assert data["first"].key_lines == {"after": 4, "template": 1}


def test_a_problem_in_a_field_names_the_line_of_that_field(write_variant):
    path, text = write_variant([("year: 2022\n", "year: twenty-two\n")])
    (p,) = refused(path)
    assert p.line == line_of(text, "year: twenty-two") and p.message.startswith("year:")


def test_a_signer_not_yet_known_is_left_out_of_the_letters(write_variant):
    """``signer.name: null`` (like ``number: null``): the plan loads and the dissemination
    letter names the signer's title alone, never "None"."""
    import copy

    from planflow.notifications._samples import SAMPLE_CONTEXTS
    from planflow.notifications.render import render

    path, _ = write_variant([("name: Nguyễn Minh Hùng}", "name: null}")])
    plan = load_plan(path)
    signer = plan.definition.document.signer
    assert signer.name is None and signer.line1 == "KT. CHỦ TỊCH"
    context = copy.deepcopy(SAMPLE_CONTEXTS["dissemination"])
    context["plan"]["signer"] = signer.model_dump()
    letter = str(render("dissemination", context))
    assert "Người ký: KT. CHỦ TỊCH, PHÓ CHỦ TỊCH" in letter and "None" not in letter


def test_a_template_of_a_kind_planflow_does_not_send_is_refused_by_name(write_variant, tmp_path):
    own = tmp_path / "mau-rieng"
    own.mkdir()
    (own / "thong-bao-rieng.txt.j2").write_text("Kính gửi {{ recipient.name }}", encoding="utf-8")
    path, text = write_variant([("registry: ", f"templates: {own}\nregistry: "),
                                ("template: publication", "template: thong-bao-rieng")])
    problems = refused(path)
    assert [p.element for p in problems] == ["publish"]
    assert "unknown template 'thong-bao-rieng'" in problems[0].message
    assert "cannot add one" in problems[0].message and "publication" in problems[0].message
