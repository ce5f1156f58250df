"""A plan as BPMN 2.0 XML: a process per process of the definition, lanes for the bodies
that act, a diagram laid out by ``planflow.bpmn.layout``, validated against the OMG schema
before anyone gets it.

Each process is a pool of its own (a collaboration with one participant, so that modelers
draw its lanes) and a diagram of its own. The main process keeps its element ids; a
sub-process's elements are prefixed with the sub-process id (``district-cycle.start``), since
ids are unique in a BPMN file and sub-processes reuse ``start`` and ``end``. What BPMN has
no element for is in the planflow extension elements (``planflow.bpmn.extensions``).
"""

from __future__ import annotations

from lxml import etree

from planflow.bpmn.documentation import boundary_text, element_text, process_text
from planflow.bpmn.extensions import NS as PLANFLOW_NS
from planflow.bpmn.extensions import boundary_to_xml, element_to_xml, plan_to_xml
from planflow.bpmn.graph import process_graphs
from planflow.bpmn.layout import layout
from planflow.bpmn.schema import BPMN, BPMNDI, DC, DI, XSI, SchemaProblem, check_schema

__all__ = ["SchemaProblem", "export_bpmn", "qualified"]

NSMAP = {"bpmn": BPMN, "bpmndi": BPMNDI, "dc": DC, "di": DI, "xsi": XSI, "planflow": PLANFLOW_NS}
B, BDI, DCN, DIN = f"{{{BPMN}}}", f"{{{BPMNDI}}}", f"{{{DC}}}", f"{{{DI}}}"


def qualified(plan, process_id: str, local_id: str) -> str:
    """The id of a process's element in the BPMN file: the main process's as it is, a
    sub-process's prefixed with the sub-process id."""
    return local_id if process_id == plan.definition.id else f"{process_id}.{local_id}"


def export_bpmn(plan) -> bytes:
    """The plan's BPMN 2.0 XML (UTF-8), checked against the schema (``SchemaProblem`` if not)."""
    d = plan.definition
    root = etree.Element(B + "definitions", nsmap=NSMAP, attrib={
        "id": f"definitions.{d.id}", "name": d.name, "targetNamespace": f"urn:planflow:plan:{d.id}",
        "exporter": "planflow", "exporterVersion": "1"})
    graphs = process_graphs(plan)
    layouts = layout(plan)
    for graph in graphs:
        collab = etree.SubElement(root, B + "collaboration", id=f"collaboration.{graph.process_id}")
        etree.SubElement(collab, B + "participant", id=f"pool.{graph.process_id}", name=graph.name,
                         processRef=graph.process_id)
    for graph in graphs:
        _process(plan, root, d.process(graph.process_id), graph)
    for graph, drawn in zip(graphs, layouts, strict=True):
        _diagram(plan, root, graph.process_id, drawn)
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    check_schema(data, "export")
    return data


def _text(parent, tag: str, text: str, attrs: dict | None = None):
    node = etree.SubElement(parent, B + tag, attrs or {})
    node.text = text
    return node


def _process(plan, root, process, graph) -> None:
    pid = process.id
    q = lambda local: qualified(plan, pid, local)
    node = etree.SubElement(root, B + "process", id=pid, name=process.name or pid, isExecutable="true")
    _text(node, "documentation", process_text(plan, process))
    if pid == plan.definition.id:
        plan_to_xml(plan.definition, etree.SubElement(node, B + "extensionElements"))
    lane_set = etree.SubElement(node, B + "laneSet", id=f"{pid}.lanes")
    lane_names = {lane.id: lane.name for lane in graph.lanes}
    for lane in graph.lanes:
        lane_node = etree.SubElement(lane_set, B + "lane", id=f"{pid}.lane.{lane.id}", name=lane.name)
        for n in graph.nodes:
            if n.lane == lane.id:
                _text(lane_node, "flowNodeRef", q(n.id))
    incoming: dict[str, list[str]] = {}
    outgoing: dict[str, list[str]] = {}
    for f in graph.flows:
        outgoing.setdefault(f.source, []).append(q(f.id))
        incoming.setdefault(f.target, []).append(q(f.id))
    lanes = {n.id: lane_names.get(n.lane, "") for n in graph.nodes}
    for e in process.elements:
        _flow_node(plan, node, e, q, lanes[e.id], incoming.get(e.id, []), outgoing.get(e.id, []),
                   _default_flow(graph, e, q))
        for b in e.boundary:
            _boundary(node, e, b, q, outgoing.get(b.id, []))
    for f in graph.flows:
        flow = etree.SubElement(node, B + "sequenceFlow", id=q(f.id), sourceRef=q(f.source), targetRef=q(f.target))
        if f.label and f.label != f.condition:
            flow.set("name", f.label)
        if f.condition is not None:
            _text(flow, "conditionExpression", f.condition, {f"{{{XSI}}}type": "bpmn:tFormalExpression"})


def _default_flow(graph, e, q) -> str | None:
    return next((q(f.id) for f in graph.flows if f.source == e.id and f.default), None)


def _flow_node(plan, parent, e, q, lane_name: str, incoming, outgoing, default) -> None:
    attrs = {"id": q(e.id)}
    if e.name:
        attrs["name"] = e.name
    if default:
        attrs["default"] = default
    if e.type == "callActivity" and e.process:
        attrs["calledElement"] = e.process
    node = etree.SubElement(parent, B + e.type, attrs)
    words = element_text(plan, e, lane_name)
    if words:
        _text(node, "documentation", words)
    element_to_xml(e, etree.SubElement(node, B + "extensionElements"))
    if not len(node[-1]):
        node.remove(node[-1])
    for ref in incoming:
        _text(node, "incoming", ref)
    for ref in outgoing:
        _text(node, "outgoing", ref)
    if e.for_each and e.type in ("userTask", "callActivity"):
        loop = etree.SubElement(node, B + "multiInstanceLoopCharacteristics", isSequential="false")
        _text(loop, "loopDataInputRef", _collection_name(e.for_each))
        etree.SubElement(loop, B + "inputDataItem", id=f"{q(e.id)}.unit", name="unit")
    if e.timer is not None:
        timer = etree.SubElement(node, B + "timerEventDefinition", id=f"{q(e.id)}.timer")
        _text(timer, "timeCycle", e.timer.cron, {f"{{{XSI}}}type": "bpmn:tFormalExpression"})


def _collection_name(for_each: str) -> str:
    """A unit collection as a BPMN data reference (a QName): ``communes of scope`` -> ``communes_of_scope``."""
    return "_".join(for_each.replace("+", " plus ").split())


def _boundary(parent, host, b, q, outgoing) -> None:
    node = etree.SubElement(parent, B + "boundaryEvent", id=q(b.id), attachedToRef=q(host.id),
                            cancelActivity="true" if b.interrupting else "false")
    _text(node, "documentation", boundary_text(b))
    boundary_to_xml(b, etree.SubElement(node, B + "extensionElements"))
    for ref in outgoing:
        _text(node, "outgoing", ref)
    timer = etree.SubElement(node, B + "timerEventDefinition", id=f"{q(b.id)}.timer")
    _text(timer, "timeDuration", b.after, {f"{{{XSI}}}type": "bpmn:tFormalExpression"})


def _bounds(parent, box) -> None:
    etree.SubElement(parent, DCN + "Bounds", x=_n(box.x), y=_n(box.y), width=_n(box.width), height=_n(box.height))


def _n(value: float) -> str:
    return f"{value:g}"


def _diagram(plan, root, pid: str, drawn) -> None:
    q = lambda local: qualified(plan, pid, local)
    diagram = etree.SubElement(root, BDI + "BPMNDiagram", id=f"diagram.{pid}", name=drawn.name)
    plane = etree.SubElement(diagram, BDI + "BPMNPlane", id=f"plane.{pid}", bpmnElement=f"collaboration.{pid}")
    pool = etree.SubElement(plane, BDI + "BPMNShape", id=f"pool.{pid}_di", bpmnElement=f"pool.{pid}",
                            isHorizontal="true")
    _bounds(pool, drawn.box)
    for lane in drawn.lanes:
        shape = etree.SubElement(plane, BDI + "BPMNShape", id=f"{pid}.lane.{lane.id}_di",
                                 bpmnElement=f"{pid}.lane.{lane.id}", isHorizontal="true")
        _bounds(shape, lane.box)
    for n in drawn.nodes.values():
        shape = etree.SubElement(plane, BDI + "BPMNShape", id=f"{q(n.id)}_di", bpmnElement=q(n.id))
        _bounds(shape, n.box)
    for f in drawn.flows:
        edge = etree.SubElement(plane, BDI + "BPMNEdge", id=f"{q(f.id)}_di", bpmnElement=q(f.id))
        for x, y in f.points:
            etree.SubElement(edge, DIN + "waypoint", x=_n(x), y=_n(y))
