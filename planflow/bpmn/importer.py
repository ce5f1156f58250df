"""BPMN 2.0 XML back into a planflow definition (the mapping of ``planflow.bpmn.export``, reversed).

First the file is checked against the OMG schema, then against planflow's subset
(``planflow.bpmn.subset``): every problem is reported at once, located (line, column, id,
name), and nothing is made of a file that has one. Then each process becomes a process of
the definition: the one carrying the planflow plan data (``planflow:plan``), else the one no
call activity calls, is the main process, the others its sub-processes in file order. Its flow
nodes become elements in file order, their outgoing sequence flows their ``next`` (a
gateway's conditional flows its ``conditions``, its default flow its ``default``), a boundary
timer a ``boundary`` of its host; the planflow extension elements give back what BPMN has no
element for. A file without them (drawn from scratch) is refused, saying so: its plan has no
registry, forms nor stages; a designer draws on an export, whose extensions modelers keep.
``import_bpmn`` writes the definition once ``load_plan`` accepts it; what ``load_plan`` finds
is said at the BPMN element it is about (line, column), the definition never being written.

The file is read, parsed and checked against the schema once (``parse_bpmn``); ``read_bpmn``
and ``import_bpmn`` take that ``BpmnFile``. Columns (a second, expat, pass over the bytes)
are read only when a problem is to be located.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from lxml import etree

from planflow.bpmn.extensions import PF, BadExtension, boundary_from_xml, element_from_xml, plan_from_xml
from planflow.bpmn.schema import BPMN, SchemaProblem, check_schema
from planflow.bpmn.subset import FLOW_NODES, BpmnProblem, Positions, refused
from planflow.problems import DefinitionError

B = f"{{{BPMN}}}"
ELEMENT_KEYS = ("id", "type", "name", "stage", "lane", "timer", "handler", "template", "to", "retry", "for_each",
                "form", "due", "output", "reminders", "escalations", "boundary", "process", "conditions", "default",
                "next")
PLAN_KEYS = ("id", "name", "version", "year", "timezone", "calendar", "registry", "forms", "templates", "document",
             "stages", "retry", "elements", "subprocesses")

__all__ = ["BpmnFile", "import_bpmn", "parse_bpmn", "read_bpmn"]


@dataclass(frozen=True)
class BpmnFile:
    """A BPMN file the OMG schema accepts, parsed once: its root, where each element starts."""

    path: Path
    root: object  # the lxml root element
    where: Positions


def read_bpmn(source: Path | BpmnFile) -> dict:
    """The definition a BPMN file describes, as the YAML mapping of a definition file.

    Raises ``DefinitionError`` with every problem located in the BPMN file (not XML, not
    BPMN 2.0 by the schema, or outside the subset planflow runs)."""
    bpmn = source if isinstance(source, BpmnFile) else parse_bpmn(source)
    path, root, where = bpmn.path, bpmn.root, bpmn.where
    problems = refused(root, where, str(path))
    processes = root.findall(B + "process")
    if not processes:
        problems.append(BpmnProblem(str(path), 1, None, "tệp không có process nào", column=1))
    elif _main_process(processes).find(f"{B}extensionElements/{PF}plan") is None:
        main = _main_process(processes)
        line, column = where.get(main, (main.sourceline or 0, 0))
        problems.append(BpmnProblem(
            str(path), line, main.get("id"), "không có dữ liệu kế hoạch của planflow (planflow:plan trong "
            "extensionElements: sổ đơn vị, biểu mẫu, giai đoạn, văn bản kế hoạch) và của từng bước (planflow:element): "
            "hãy vẽ tiếp trên tệp do `planflow bpmn export` xuất ra từ một kế hoạch, modeler giữ nguyên các phần đó",
            kind="process", column=column, name=main.get("name")))
    if problems:
        raise DefinitionError(sorted(problems, key=lambda p: (p.line, p.column)))
    try:
        return _definition(processes)
    except BadExtension as exc:  # a hand edit of what the export wrote
        line, column = where.get(exc.node, (exc.node.sourceline or 0, 0))
        owner = next((a for a in exc.node.iterancestors() if a.get("id")), None)
        named = {"kind": etree.QName(owner).localname, "name": owner.get("name")} if owner is not None else {}
        raise DefinitionError([BpmnProblem(str(path), line, owner.get("id") if owner is not None else None, str(exc),
                                           column=column, **named)]) from None


def parse_bpmn(path: Path) -> BpmnFile:
    """A BPMN file read, parsed and checked against the OMG schema, once; ``DefinitionError``
    (located) when it is not XML or not BPMN 2.0."""
    file = str(path)
    data = Path(path).read_bytes()
    try:
        tree = etree.ElementTree(etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True)))
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        raise DefinitionError([BpmnProblem(file, line, None, f"không đọc được XML: {exc.msg}", column=column)]) from None
    try:
        check_schema(tree, file)
    except SchemaProblem as exc:
        raise DefinitionError([BpmnProblem(file, v.line, None, f"không đúng lược đồ BPMN 2.0 (OMG): {v.message}",
                                           column=v.column) for v in exc.violations]) from None
    root = tree.getroot()
    return BpmnFile(Path(path), root, Positions(root, data))


def _in_bpmn(bpmn: BpmnFile, target: Path, problems) -> list[BpmnProblem]:
    """The problems ``load_plan`` found in the definition made of a BPMN file, said at the BPMN
    element they are about (the definition was never written: its lines mean nothing); one
    about the plan as a whole at its ``planflow:plan``."""
    path, where = bpmn.path, bpmn.where
    nodes = [n for n in bpmn.root.iter() if isinstance(n.tag, str)]
    plan = next((n for n in nodes if n.tag == f"{PF}plan"), None)
    out = []
    for p in problems:
        node = next((n for n in nodes if p.element and n.get("id") is not None
                     and (n.get("id") == p.element or n.get("id").endswith(f".{p.element}"))), plan)
        line, column = where.get(node, (node.sourceline or 0, 0)) if node is not None else (0, 0)
        message = p.message
        if "not found" in message:
            message += (f" — the definition's paths are relative to where it is written ({target.parent}): "
                        "write it (-o) in the folder that holds its registry and forms, e.g. definitions/")
        out.append(BpmnProblem(str(path), line, p.element, message, kind=p.kind, column=column,
                               name=node.get("name") if node is not None and p.element else None))
    return out


def _main_process(processes):
    with_plan = [p for p in processes if p.find(f"{B}extensionElements/{PF}plan") is not None]
    if with_plan:
        return with_plan[0]
    called = {c.get("calledElement") for p in processes for c in p.iter(B + "callActivity")}
    return next((p for p in processes if p.get("id") not in called), processes[0])


def _definition(processes) -> dict:
    main = _main_process(processes)
    plan = plan_from_xml(main.find(f"{B}extensionElements/{PF}plan"))
    out = {"id": main.get("id"), "name": main.get("name"), **plan, "elements": _elements(main, main.get("id"))}
    subs = [p for p in processes if p is not main]
    if subs:
        out["subprocesses"] = [_without_none({"id": p.get("id"), "name": p.get("name"),
                                              "elements": _elements(p, main.get("id"))}) for p in subs]
    return {k: out[k] for k in PLAN_KEYS if out.get(k) is not None}


def _local(process, main_id: str, node_id: str | None) -> str | None:
    """An id as the definition writes it: a sub-process's export prefix taken off."""
    prefix = f"{process.get('id')}."
    if node_id and process.get("id") != main_id and node_id.startswith(prefix):
        return node_id[len(prefix):]
    return node_id


def _elements(process, main_id: str) -> list[dict]:
    local = lambda node_id: _local(process, main_id, node_id)
    flows = process.findall(B + "sequenceFlow")
    boundaries = process.findall(B + "boundaryEvent")
    out = []
    for node in process:
        if not isinstance(node.tag, str) or node.tag[len(B):] not in FLOW_NODES:
            continue
        element = _element(node, local, flows)
        hosted = [b for b in boundaries if b.get("attachedToRef") == node.get("id")]
        if hosted:
            element["boundary"] = [_boundary(b, local, flows, element.get("next", [])) for b in hosted]
        out.append({k: element[k] for k in ELEMENT_KEYS if element.get(k) not in (None, [], {})})
    return out


def _element(node, local, flows) -> dict:
    kind = node.tag[len(B):]
    extension = element_from_xml(node.find(f"{B}extensionElements/{PF}element"))
    element = {"id": local(node.get("id")), "type": kind, "name": node.get("name")}
    timezone = extension.pop("timezone", None)
    element.update(extension)
    if kind == "callActivity":
        element["process"] = node.get("calledElement")
    loop = node.find(B + "multiInstanceLoopCharacteristics")
    if loop is not None and "for_each" not in element:
        element["for_each"] = (loop.findtext(B + "loopDataInputRef") or "").strip() or None
    cycle = node.find(f"{B}timerEventDefinition/{B}timeCycle")
    if cycle is not None:
        element["timer"] = _without_none({"cron": (cycle.text or "").strip(), "timezone": timezone})
    default = node.get("default")
    leaving = [f for f in flows if f.get("sourceRef") == node.get("id")]
    conditions = [{"when": (f.findtext(B + "conditionExpression") or "").strip(), "next": local(f.get("targetRef"))}
                  for f in leaving if f.find(B + "conditionExpression") is not None]
    element["conditions"] = conditions
    element["default"] = next((local(f.get("targetRef")) for f in leaving if f.get("id") == default), None)
    element["next"] = [local(f.get("targetRef")) for f in leaving
                       if f.find(B + "conditionExpression") is None and f.get("id") != default]
    if len(element["next"]) == 1:
        element["next"] = element["next"][0]
    return element


def _boundary(node, local, flows, host_next) -> dict:
    extension = boundary_from_xml(node.find(f"{B}extensionElements/{PF}boundary"))
    duration = node.findtext(f"{B}timerEventDefinition/{B}timeDuration")
    out = {"id": local(node.get("id")), "after": extension.get("after") or (duration or "").strip(),
           "anchor": extension.get("anchor"), "at": extension.get("at"),
           "interrupting": node.get("cancelActivity", "true") != "false"}
    if "next" in extension:
        out["next"] = extension["next"]
    else:
        targets = [local(f.get("targetRef")) for f in flows if f.get("sourceRef") == node.get("id")]
        host = [host_next] if isinstance(host_next, str) else list(host_next)
        if targets and targets != host:
            out["next"] = targets[0]
    if out["interrupting"] is True:
        del out["interrupting"]
    return _without_none(out)


def _without_none(mapping: dict) -> dict:
    return {k: v for k, v in mapping.items() if v is not None}


def import_bpmn(source: Path | BpmnFile, target: Path) -> Path:
    """Read a BPMN file (``read_bpmn``) and write its definition to ``target``, after
    ``load_plan`` accepted it there (the registry, forms and calendar it names are found
    relative to ``target``, as for any definition). Nothing is written when it is refused:
    ``DefinitionError`` names the problems (in the BPMN file, or in the definition it makes)."""
    bpmn = source if isinstance(source, BpmnFile) else parse_bpmn(source)
    path = bpmn.path
    data = read_bpmn(bpmn)
    from planflow.loader import load_plan

    text = (f"# Imported from {Path(path).name} by `planflow bpmn import`.\n"
            + yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=120))
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    trial = target.with_name(f".{target.stem}.importing.yaml")
    trial.write_text(text, encoding="utf-8")
    try:
        load_plan(trial)
    except DefinitionError as exc:
        trial.unlink(missing_ok=True)
        mine = [p for p in exc.problems if p.file.endswith(trial.name)]
        others = [p for p in exc.problems if not p.file.endswith(trial.name)]  # in its registry, forms...
        raise DefinitionError(_in_bpmn(bpmn, target, mine) + others) from None
    except BaseException:
        trial.unlink(missing_ok=True)
        raise
    trial.replace(target)
    return target
