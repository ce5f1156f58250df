"""BPMN 2.0 XML out and in (issue 14), as a process designer and an independent engine see it.

The shipped plans are exported with ``planflow bpmn export``; the file is checked against the
OMG schema (read here straight from the shipped XSD files) and parsed by SpiffWorkflow's BPMN
parser; it holds every element with its BPMN type, lanes named for the bodies that act, and a
diagram whose shapes sit in their lanes. ``planflow bpmn import`` of that file gives back the
same definition, and the same plan year on the engine. A file drawn with an inclusive gateway
and a message event is refused with both located, and nothing is written.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from lxml import etree
from typer.testing import CliRunner

from planflow import Engine, connect, load_plan, load_scenario
from planflow.bpmn.layout import layout
from planflow.flows import cli_bpmn, cli_plan  # noqa: F401  (register `planflow bpmn`, `planflow validate`)
from planflow.flows.cli_common import app
from planflow.simulation import EngineActions, first_start, run_year
from planflow.summary import build_summary
from tests.conftest import REPO

DEFINITIONS = REPO / "definitions"
PLANS = {"hai-duong": (DEFINITIONS / "hai-duong-dan-van-2022.yaml", DEFINITIONS / "scenarios" / "hai-duong-2022.yaml"),
         "hai-phong": (DEFINITIONS / "hai-phong-dan-van-2026.yaml", DEFINITIONS / "scenarios" / "hai-phong-2026.yaml")}
XSD = REPO / "planflow" / "bpmn" / "xsd"
REFUSED = REPO / "tests" / "bpmn" / "inclusive-and-message.bpmn"
NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL", "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
      "dc": "http://www.omg.org/spec/DD/20100524/DC", "di": "http://www.omg.org/spec/DD/20100524/DI"}
runner = CliRunner()


def _run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module", params=sorted(PLANS))
def exported(request, tmp_path_factory):
    """(plan, path of its BPMN export, the parsed XML)."""
    path, _ = PLANS[request.param]
    target = tmp_path_factory.mktemp("bpmn") / f"{request.param}.bpmn"
    code, output = _run("bpmn", "export", path, "-o", target)
    assert code == 0, output
    return load_plan(path), target, etree.parse(str(target))


def _processes(plan):
    d = plan.definition
    return [d.main, *d.subprocesses]


def _bpmn_id(plan, process, element_id: str) -> str:
    return element_id if process.id == plan.definition.id else f"{process.id}.{element_id}"


def test_the_export_validates_against_the_omg_bpmn_schema(exported):
    _, _, tree = exported
    schema = etree.XMLSchema(etree.parse(str(XSD / "BPMN20.xsd")))
    assert schema.validate(tree), schema.error_log


def test_spiffworkflow_parses_every_process_of_the_export(exported):
    from SpiffWorkflow.bpmn.parser import BpmnParser, BpmnValidator

    plan, path, tree = exported
    parser = BpmnParser(validator=BpmnValidator())  # SpiffWorkflow's own copy of the OMG schema
    parser.add_bpmn_xml(tree, filename=str(path))
    called = parser.get_subprocess_specs(plan.definition.id)  # the call activities, resolved
    assert sorted(called) == sorted(p.id for p in plan.definition.subprocesses)
    for process in _processes(plan):
        spec = parser.get_spec(process.id)
        for e in process.elements:
            if e.type not in ("startEvent", "endEvent"):  # Spiff names those Start / End itself
                assert _bpmn_id(plan, process, e.id) in spec.task_specs, (process.id, e.id)


def test_every_element_has_its_bpmn_type_and_its_flows(exported):
    plan, _, tree = exported
    for process in _processes(plan):
        node = tree.find(f"bpmn:process[@id='{process.id}']", NS)
        assert node is not None, process.id
        for e in process.elements:
            xml = node.find(f"bpmn:{e.type}[@id='{_bpmn_id(plan, process, e.id)}']", NS)
            assert xml is not None, (process.id, e.id, e.type)
            assert xml.get("name") == e.name
            targets = {f.get("targetRef") for f in node.findall(f"bpmn:sequenceFlow[@sourceRef='{xml.get('id')}']", NS)}
            wanted = {_bpmn_id(plan, process, t) for t in e.next + [c.next for c in e.conditions]
                      + ([e.default] if e.default else [])}
            assert targets == wanted, e.id
            if e.for_each:
                assert xml.find("bpmn:multiInstanceLoopCharacteristics", NS).get("isSequential") == "false"
            for b in e.boundary:
                event = node.find(f"bpmn:boundaryEvent[@id='{_bpmn_id(plan, process, b.id)}']", NS)
                assert event.get("attachedToRef") == xml.get("id")
                assert event.get("cancelActivity") == ("true" if b.interrupting else "false")
                assert event.find("bpmn:timerEventDefinition", NS) is not None


def test_gateways_timers_and_the_called_district_cycle(exported):
    plan, _, tree = exported
    start = tree.find("bpmn:process/bpmn:startEvent/bpmn:timerEventDefinition/bpmn:timeCycle", NS)
    assert start.text == plan.definition.main.start.timer.cron
    gateway = tree.find("bpmn:process/bpmn:exclusiveGateway[@id='review_gateway']", NS)
    default = tree.find(f"bpmn:process/bpmn:sequenceFlow[@id='{gateway.get('default')}']", NS)
    assert default.get("targetRef") == "publish" and default.find("bpmn:conditionExpression", NS) is None
    returned = tree.find("bpmn:process/bpmn:sequenceFlow[@targetRef='revise']", NS)
    assert returned.findtext("bpmn:conditionExpression", namespaces=NS) == "review.decision == 'return'"
    assert returned.get("name") == "Trả lại, đề nghị bổ sung"  # the review form's words, not the expression
    calls = tree.findall("bpmn:process/bpmn:callActivity", NS)
    assert [c.get("calledElement") for c in calls] == [p.id for p in plan.definition.subprocesses]
    for call in calls:
        assert tree.find(f"bpmn:process[@id='{call.get('calledElement')}']", NS) is not None


def test_lanes_are_the_bodies_that_act_in_vietnamese(exported):
    plan, _, tree = exported
    lanes = {lane.get("name") for lane in tree.iterfind(".//bpmn:lane", NS)}
    assert {"Sở Nội vụ", "Sở, ban, ngành", "UBND cấp xã"} <= lanes
    assert ("UBND cấp huyện" in lanes) == bool(plan.definition.subprocesses)  # two tiers: no district lane
    reviewer = plan.definition.main.element("review").lane
    assert plan.registry.get(reviewer).name in lanes
    for process in tree.iterfind("bpmn:process", NS):  # each flow node in exactly one lane
        nodes = [n.get("id") for n in process if n.get("id") and etree.QName(n).localname.endswith(
            ("Event", "Task", "Gateway", "Activity"))]
        refs = [r.text for r in process.iterfind(".//bpmn:flowNodeRef", NS)]
        assert sorted(refs) == sorted(nodes)


def test_what_bpmn_cannot_say_is_in_vietnamese_documentation_and_planflow_extensions(exported):
    plan, _, tree = exported
    task = tree.find("bpmn:process/bpmn:userTask[@id='department_self_evaluation']", NS)
    words = task.findtext("bpmn:documentation", namespaces=NS)
    due = plan.definition.main.element("department_self_evaluation").due["before"]
    y, m, d = (int(x) for x in str(due).split("-"))
    assert f"trước ngày {d}/{m}/{y}" in words and "ngày làm việc" in words and "Sở Nội vụ" in words
    extension = task.find("bpmn:extensionElements/*", NS)
    assert len(extension.findall("{*}escalation")) == len(plan.definition.main.element(
        "department_self_evaluation").escalations)


def test_the_documentation_names_each_deadline_in_the_letters_words(exported):
    """A fixed deadline reads in the export as the reminder letter for the same rule says it
    ("chậm nhất 23 giờ 59 ngày 09 tháng 12 năm 2022"), a commune's offset one included."""
    from planflow.letters import task_due
    from planflow.notifications.render import SAMPLE_CONTEXTS, render

    plan, _, tree = exported
    fixed = [(p, e) for p in _processes(plan) for e in p.elements
             if e.type == "userTask" and task_due(plan, e) is not None]
    assert len(fixed) >= 2 and (not plan.definition.subprocesses or any("offset" in e.due for _, e in fixed))
    for process, e in fixed:
        letter = render("reminder", {**SAMPLE_CONTEXTS["reminder"], "due": task_due(plan, e)}).text
        said = re.search(r"chậm nhất (.+?)\.", letter)[1]
        words = tree.find(f".//bpmn:userTask[@id='{_bpmn_id(plan, process, e.id)}']/bpmn:documentation", NS).text
        assert f"chậm nhất {said}" in words, (e.id, said, words)


def test_an_iso_offset_is_in_words_in_the_documentation(tmp_path):
    shipped = PLANS["hai-duong"][0].read_text(encoding="utf-8")
    assert "reminders: [-5wd, -2wd, -1wd]" in shipped
    folder = _definitions_beside(tmp_path)
    (folder / "plan.yaml").write_text(shipped.replace("reminders: [-5wd, -2wd, -1wd]", "reminders: [-P30D, -2wd, -1wd]", 1),
                                      encoding="utf-8")
    code, output = _run("bpmn", "export", folder / "plan.yaml", "-o", tmp_path / "plan.bpmn")
    assert code == 0, output
    tree = etree.parse(str(tmp_path / "plan.bpmn"))
    words = tree.findtext("bpmn:process/bpmn:userTask[@id='department_self_evaluation']/bpmn:documentation",
                          namespaces=NS)
    assert "Nhắc việc: 30 ngày trước, 2 ngày làm việc trước, 1 ngày làm việc trước hạn." in words
    assert "P30D" not in words


def test_every_shape_sits_in_its_lane_and_every_edge_joins_its_ends(exported):
    _, _, tree = exported
    bounds = {s.get("bpmnElement"): s.find("dc:Bounds", NS).attrib for s in tree.iterfind(".//bpmndi:BPMNShape", NS)}
    box = {k: tuple(float(v[a]) for a in ("x", "y", "width", "height")) for k, v in bounds.items()}
    for lane in tree.iterfind(".//bpmn:lane", NS):
        lx, ly, lw, lh = box[lane.get("id")]
        for ref in lane.iterfind("bpmn:flowNodeRef", NS):
            x, y, w, h = box[ref.text]
            if tree.find(f".//bpmn:boundaryEvent[@id='{ref.text}']", NS) is None:
                assert lx <= x and x + w <= lx + lw and ly <= y and y + h <= ly + lh, ref.text
    for edge in tree.iterfind(".//bpmndi:BPMNEdge", NS):
        flow = tree.find(f".//bpmn:sequenceFlow[@id='{edge.get('bpmnElement')}']", NS)
        points = [(float(p.get("x")), float(p.get("y"))) for p in edge.iterfind("di:waypoint", NS)]
        for end, ref in ((points[0], flow.get("sourceRef")), (points[-1], flow.get("targetRef"))):
            assert _on_border(end, box[ref]), (flow.get("id"), end, ref)


def _on_border(point, box) -> bool:
    (px, py), (x, y, w, h) = point, box
    inside = x - 0.5 <= px <= x + w + 0.5 and y - 0.5 <= py <= y + h + 0.5
    return inside and min(abs(px - x), abs(px - x - w), abs(py - y), abs(py - y - h)) < 0.5


def test_no_two_shapes_of_a_process_overlap_and_all_are_in_its_pool():
    for path, _ in PLANS.values():
        for drawn in layout(load_plan(path)):
            pool = drawn.box
            for n in drawn.nodes.values():
                b = n.box
                assert pool.x <= b.x and b.x + b.width <= pool.x + pool.width, n.id
                assert pool.y <= b.y and b.y + b.height <= pool.y + pool.height, n.id
            boxes = [(n.id, n.box) for n in drawn.nodes.values() if n.attached_to is None]
            for i, (a, p) in enumerate(boxes):
                for b, q in boxes[i + 1:]:
                    apart = p.x + p.width <= q.x or q.x + q.width <= p.x or p.y + p.height <= q.y or q.y + q.height <= p.y
                    assert apart, (drawn.process_id, a, b)


def _definitions_beside(tmp_path):
    """A folder where an imported definition finds the registry, forms and calendar it names."""
    for sub in ("registries", "forms", "calendars", "templates"):
        (tmp_path / sub).symlink_to(DEFINITIONS / sub, target_is_directory=True)
    return tmp_path


def _without_lines(value):
    if isinstance(value, dict):
        return {k: _without_lines(v) for k, v in value.items() if k != "line"}
    if isinstance(value, list):
        return [_without_lines(v) for v in value]
    return value


def _summary(plan, scenario, tmp_path, name: str) -> dict:
    engine = Engine(plan, connect(f"sqlite:///{tmp_path / name}.db"))
    clock = first_start(plan)
    root = engine.start(f"{plan.id}/{plan.year}/bpmn", clock)
    actions = EngineActions(engine, root)
    actions.drain(clock)
    asyncio.run(run_year(engine, load_scenario(scenario, plan), root, clock, actions))
    return build_summary(engine, root)


def test_export_then_import_gives_back_the_plan_and_its_year(exported, tmp_path):
    plan, path, _ = exported
    folder = _definitions_beside(tmp_path)
    target = folder / "imported.yaml"
    code, output = _run("bpmn", "import", path, "-o", target)
    assert code == 0, output
    code, output = _run("validate", target)
    assert code == 0, output
    imported = load_plan(target)
    assert _without_lines(imported.definition.model_dump()) == _without_lines(plan.definition.model_dump())
    scenario = next(s for p, s in PLANS.values() if load_plan(p).id == plan.id)
    assert _summary(imported, scenario, tmp_path, "imported") == _summary(plan, scenario, tmp_path, "shipped")


def _located(text: str, tag: str) -> tuple[int, int]:
    """(line, column) of a start tag in a file, both from 1."""
    for number, line in enumerate(text.splitlines(), 1):
        if f"<bpmn:{tag}" in line:
            return number, line.index(f"<bpmn:{tag}") + 1
    raise AssertionError(tag)


def test_an_inclusive_gateway_and_a_message_event_are_refused_both_located(tmp_path):
    target = _definitions_beside(tmp_path) / "drawn.yaml"
    code, output = _run("bpmn", "import", REFUSED, "-o", target)
    assert code == 1
    text = REFUSED.read_text(encoding="utf-8")
    errors = [line for line in output.splitlines() if line.startswith("error")]
    assert len(errors) == 3, output  # the two, and the planflow data a file drawn from scratch lacks
    process_line, process_col = _located(text, "process")
    assert f"inclusive-and-message.bpmn:{process_line}:{process_col}: process 'tham-dinh'" in errors[0]
    assert "planflow:plan" in errors[0] and "planflow bpmn export" in errors[0]
    gateway_line, gateway_col = _located(text, "inclusiveGateway")
    event_line, event_col = _located(text, "intermediateCatchEvent")
    assert f"inclusive-and-message.bpmn:{gateway_line}:{gateway_col}:" in output
    assert "'Gateway_0y6n3kd' «Ý kiến thẩm định?»" in output and "exclusiveGateway" in output
    assert f"inclusive-and-message.bpmn:{event_line}:{event_col}:" in output
    assert "'Event_cho_cong_van'" in output and "messageEventDefinition" in output and "sendTask" in output
    assert not target.exists() and not list(tmp_path.glob(".*.yaml"))


def test_a_file_that_is_not_bpmn_is_refused_at_its_line(tmp_path):
    broken = REFUSED.read_text(encoding="utf-8").replace(' targetRef="Activity_soan"', "", 1)
    line = next(n for n, t in enumerate(broken.splitlines(), 1) if 'id="Flow_0a1" sourceRef' in t)
    path = tmp_path / "broken.bpmn"
    path.write_text(broken, encoding="utf-8")
    code, output = _run("bpmn", "import", path, "-o", tmp_path / "out.yaml")
    assert code == 1 and re.search(rf"broken\.bpmn:{line}:\d+: .*targetRef", output), output
    assert not (tmp_path / "out.yaml").exists()


@pytest.mark.parametrize("edit, said", [
    (lambda text: text.replace(' version="1"', ' version="x"', 1), 'version="x" không phải là số'),
    (lambda text: text.replace("<planflow:due>", "<planflow:due>{a: [", 1), "planflow:due không đọc được như YAML"),
    (lambda text: text.replace('retries="3"', 'retries="ba"', 1), 'retries="ba" không phải là số'),
])
def test_a_hand_broken_planflow_extension_is_refused_at_its_line(exported, tmp_path, edit, said):
    """What the export wrote for planflow, edited by hand into something it cannot read: a
    located refusal, nothing written (not a traceback)."""
    edited, target = _edited(exported, tmp_path, edit)
    code, output = _run("bpmn", "import", edited, "-o", target)
    assert code == 1 and said in output and re.search(r"edited\.bpmn:\d+:\d+: ", output), output
    assert not target.exists()


def test_an_import_does_not_replace_a_file_unless_told(exported, tmp_path):
    _, path, _ = exported
    target = _definitions_beside(tmp_path) / "plan.yaml"
    target.write_text("# mine\n", encoding="utf-8")
    code, output = _run("bpmn", "import", path, "-o", target)
    assert code == 1 and "--force" in output and target.read_text(encoding="utf-8") == "# mine\n"
    code, output = _run("bpmn", "import", path, "-o", target, "--force")
    assert code == 0, output


def _edited(exported, tmp_path, edit) -> tuple:
    """The export edited as a modeler would save it, and a folder to import it into."""
    _, path, _ = exported
    edited = tmp_path / "edited.bpmn"
    edited.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return edited, _definitions_beside(tmp_path) / "edited.yaml"


def test_a_step_renamed_in_a_modeler_comes_back_renamed(exported, tmp_path):
    plan, _, _ = exported
    old = plan.definition.main.element("publish").name
    edited, target = _edited(exported, tmp_path, lambda text: text.replace(f'name="{old}"', 'name="Đăng kết quả"'))
    code, output = _run("bpmn", "import", edited, "-o", target)
    assert code == 0, output
    assert load_plan(target).definition.main.element("publish").name == "Đăng kết quả"


def test_a_task_drawn_without_planflow_data_is_refused_at_its_place_in_the_bpmn(exported, tmp_path):
    def add_task(text: str) -> str:
        text = text.replace('<bpmn:sequenceFlow id="aggregate-to-report_upward" sourceRef="aggregate" '
                            'targetRef="report_upward"/>',
                            '<bpmn:sequenceFlow id="aggregate-to-report_upward" sourceRef="aggregate" '
                            'targetRef="Activity_1"/>\n    <bpmn:sequenceFlow id="Flow_1" sourceRef="Activity_1" '
                            'targetRef="report_upward"/>')
        return text.replace('    <bpmn:serviceTask id="aggregate"',
                            '    <bpmn:userTask id="Activity_1" name="Lấy ý kiến các sở"/>\n'
                            '    <bpmn:serviceTask id="aggregate"', 1)

    edited, target = _edited(exported, tmp_path, add_task)
    code, output = _run("bpmn", "import", edited, "-o", target)
    line, column = _located(edited.read_text(encoding="utf-8"), "userTask id=\"Activity_1\"")
    assert code == 1
    assert f"edited.bpmn:{line}:{column}: element 'Activity_1' «Lấy ý kiến các sở»: a userTask needs a 'form'" in output
    assert not target.exists()


def test_a_plan_of_every_year_is_exported_for_the_year_asked(tmp_path):
    target = tmp_path / "every-year.bpmn"
    code, output = _run("bpmn", "export", REPO / "tests" / "fixtures" / "every-year" / "plan.yaml", "--year", 2031,
                        "-o", target)
    assert code == 0, output
    tree = etree.parse(str(target))
    main = tree.find("bpmn:process", NS)
    assert "năm 2031" in main.get("name") and main.find("bpmn:extensionElements/*", NS).get("year") == "2031"


def test_a_broken_definition_is_not_exported(tmp_path):
    broken = REPO / "tests" / "broken" / "definitions" / "call-unknown-process.yaml"
    code, output = _run("bpmn", "export", broken, "-o", tmp_path / "broken.bpmn")
    assert code == 1 and re.search(r"call-unknown-process\.yaml:\d+: element 'districts'", output), output
    assert not (tmp_path / "broken.bpmn").exists()


def test_a_non_interrupting_timer_and_a_step_s_own_retry_come_back_too(tmp_path):
    shipped, _ = PLANS["hai-phong"]
    closed = '      - {id: department_reports_closed, after: +5wd, at: "08:00", interrupting: true}\n    next: join\n'
    text = shipped.read_text(encoding="utf-8")
    assert closed in text
    folder = _definitions_beside(tmp_path)
    variant = folder / "variant.yaml"
    variant.write_text(text.replace(closed, closed.replace("    next: join\n", "") + (
        "      - {id: department_chased, after: P30D, anchor: start, interrupting: false, next: chase}\n"
        "    next: join\n\n"
        "  - {id: chase, type: sendTask, name: Sở Nội vụ đôn đốc, stage: self_evaluation, lane: so-noi-vu,\n"
        "     template: escalation-1, to: departments, retry: {retries: 1, delay_s: [5]}, next: chase_end}\n\n"
        "  - {id: chase_end, type: endEvent}\n"), 1), encoding="utf-8")
    plan = load_plan(variant)
    bpmn = tmp_path / "variant.bpmn"
    assert _run("bpmn", "export", variant, "-o", bpmn)[0] == 0
    event = etree.parse(str(bpmn)).find("bpmn:process/bpmn:boundaryEvent[@id='department_chased']", NS)
    assert event.get("cancelActivity") == "false"
    code, output = _run("bpmn", "import", bpmn, "-o", folder / "back.yaml")
    assert code == 0, output
    back = load_plan(folder / "back.yaml").definition
    assert _without_lines(back.model_dump()) == _without_lines(plan.definition.model_dump())
    assert back.main.element("department_self_evaluation").boundary[1].anchor == "start"


def test_an_import_where_the_registry_is_not_says_where_to_write_it(exported, tmp_path):
    _, path, _ = exported
    lonely = tmp_path / "plan.bpmn"
    lonely.write_bytes(path.read_bytes())
    code, output = _run("bpmn", "import", lonely)  # by default beside the BPMN file: no registries/ there
    assert code == 1 and "registry" in output and "file not found" in output and "-o" in output, output
    assert [p.name for p in tmp_path.iterdir()] == ["plan.bpmn"]


def test_an_import_reads_parses_and_checks_the_file_once(exported, tmp_path, monkeypatch):
    """`planflow bpmn import` without -o (the file's id names the output), accepted, then
    refused by `load_plan` (no registry beside it): each time the file is read, parsed and
    checked against the OMG schema once; its columns are read only to locate a problem."""
    from pathlib import Path

    from planflow.bpmn import schema as bpmn_schema
    from planflow.bpmn import subset

    _, path, _ = exported
    plan_id = etree.parse(str(path)).find("bpmn:process", NS).get("id")
    (tmp_path / "beside").mkdir()
    accepted, lonely = _definitions_beside(tmp_path / "beside"), tmp_path
    (accepted / "plan.bpmn").write_bytes(path.read_bytes())
    (lonely / "plan.bpmn").write_bytes(path.read_bytes())
    xsd, seen = bpmn_schema.schema(), []

    class Counting:  # the schema, counting what it checks
        error_log = property(lambda self: xsd.error_log)

        def validate(self, tree):
            seen.append("schema")
            return xsd.validate(tree)

    read_bytes, columns = Path.read_bytes, subset.positions
    monkeypatch.setattr(bpmn_schema, "schema", Counting)
    monkeypatch.setattr(Path, "read_bytes", lambda p: (seen.append("read") if p.suffix == ".bpmn" else None)
                        or read_bytes(p))
    monkeypatch.setattr(subset, "positions", lambda data: seen.append("columns") or columns(data))
    code, output = _run("bpmn", "import", accepted / "plan.bpmn")
    assert code == 0 and (accepted / f"{plan_id}.yaml").exists(), output
    assert seen == ["read", "schema"]
    seen.clear()
    code, output = _run("bpmn", "import", lonely / "plan.bpmn")
    assert code == 1 and "file not found" in output and not (lonely / f"{plan_id}.yaml").exists(), output
    assert seen == ["read", "schema", "columns"]
