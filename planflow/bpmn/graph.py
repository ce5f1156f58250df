"""A definition's processes as BPMN sees them: flow nodes, sequence flows and lanes.

One reading of the definition shared by the BPMN export and the diagram (through
``planflow.bpmn.layout``): every element is a node, each boundary timer a node attached to its
host; every way a token can go (``next``, a gateway's conditions and default, a boundary's
``next`` or, without one, its host's) is a sequence flow with an id that stays the same as
long as the definition does; every node sits in the lane of the body that acts.

Lanes: an element's ``lane`` names a registry unit (its lane is that unit, named as the
registry names it) or ``unit`` / ``scope``, the units a ``for_each`` runs over (one lane per
tier: "Sở, ban, ngành", "UBND cấp huyện", "UBND cấp xã", named after the registry group);
a call activity sits in the lane of the units it runs for, a gateway or an event in the lane
of the element before it (a start event: of the one after it).
"""

from __future__ import annotations

from dataclasses import dataclass

from planflow.aggregation import GROUP_NAMES, group_of
from planflow.expressions import ExpressionError, parse_collection, review_decision

__all__ = ["GraphFlow", "GraphLane", "GraphNode", "ProcessGraph", "process_graphs"]


@dataclass(frozen=True)
class GraphNode:
    id: str  # the element's id (a boundary event: the boundary's id)
    kind: str  # the BPMN element type
    name: str  # the element's Vietnamese name ("" when the definition gives none)
    lane: str | None
    attached_to: str | None = None
    multi_instance: bool = False
    timer: bool = False


@dataclass(frozen=True)
class GraphFlow:
    id: str
    source: str
    target: str
    label: str | None  # words for a person: a condition's meaning, or None
    default: bool = False
    condition: str | None = None  # the condition as the definition writes it


@dataclass(frozen=True)
class GraphLane:
    id: str
    name: str


@dataclass(frozen=True)
class ProcessGraph:
    process_id: str
    name: str
    lanes: tuple[GraphLane, ...]
    nodes: tuple[GraphNode, ...]  # in the definition's order, each boundary event after its host
    flows: tuple[GraphFlow, ...]

    def node(self, node_id: str) -> GraphNode:
        return next(n for n in self.nodes if n.id == node_id)


def process_graphs(plan) -> list[ProcessGraph]:
    """The main process first, then each sub-process, in the definition's order."""
    memo_key = ("bpmn_graphs",)
    if memo_key not in plan.memo:
        d = plan.definition
        scopes = _scopes(d)
        plan.memo[memo_key] = [_graph(plan, p, scopes.get(p.id)) for p in [d.main, *d.subprocesses]]
    return plan.memo[memo_key]


def _scopes(definition) -> dict[str, str]:
    """For each sub-process, the registry group its call activity runs it for (``districts``)."""
    out = {}
    for process in [definition.main, *definition.subprocesses]:
        for e in process.elements:
            if e.type == "callActivity" and e.process and e.for_each:
                out.setdefault(e.process, _first_group(e.for_each, None))
    return out


def _first_group(collection: str, scope_group: str | None) -> str | None:
    try:
        terms = parse_collection(collection)
    except ExpressionError:
        return None
    term = terms[0]
    return term.group if term.group is not None else scope_group


def _graph(plan, process, scope_group: str | None) -> ProcessGraph:
    lanes: dict[str, str] = {}
    own = {e.id: _lane_of(plan, e, scope_group, lanes) for e in process.elements}
    flows = _flows(plan, process)
    _fill_lanes(process, own, flows)
    nodes = []
    for e in process.elements:
        nodes.append(GraphNode(e.id, e.type, e.name or "", own[e.id], multi_instance=bool(e.for_each)
                               and e.type in ("userTask", "callActivity"), timer=e.timer is not None))
        for b in e.boundary:
            nodes.append(GraphNode(b.id, "boundaryEvent", "", own[e.id], attached_to=e.id, timer=True))
    used = [own[e.id] for e in process.elements]
    ordered = tuple(GraphLane(lane, lanes[lane]) for lane in dict.fromkeys(used) if lane is not None)
    return ProcessGraph(process.id, process.name or process.id, ordered, tuple(nodes), tuple(flows))


def _lane_of(plan, element, scope_group: str | None, lanes: dict[str, str]) -> str | None:
    """The lane id of an element that names its body (registering the lane's name), else None."""
    reg = plan.registry
    group = None
    if element.lane in ("unit", "scope") or (element.type == "callActivity" and element.for_each):
        collection = element.for_each or ("scope" if element.lane == "scope" else None)
        group = _first_group(collection, scope_group) if collection else None
        if element.lane == "scope" and scope_group:
            group = scope_group
    if group is not None:
        members = reg.group(group)
        lanes.setdefault(group, GROUP_NAMES[group_of(members[0])] if members else group)
        return group
    if element.lane and element.lane not in ("unit", "scope"):
        unit = reg.get(element.lane)
        lanes.setdefault(element.lane, unit.name if unit is not None else element.lane)
        return element.lane
    return None


def _fill_lanes(process, own: dict[str, str | None], flows: list[GraphFlow]) -> None:
    """A node with no body of its own joins the lane before it (a start event: after it)."""
    for _ in range(len(process.elements)):
        changed = False
        for f in flows:
            source, target = _host(process, f.source), f.target
            if own.get(target) is None and own.get(source) is not None and target in own:
                own[target], changed = own[source], True
            elif (own.get(source) is None and own.get(target) is not None and source in own
                  and process.element(source).type == "startEvent"):
                own[source], changed = own[target], True
        if not changed:
            return


def _host(process, node_id: str) -> str:
    for e in process.elements:
        if any(b.id == node_id for b in e.boundary):
            return e.id
    return node_id


def _flows(plan, process) -> list[GraphFlow]:
    out: list[GraphFlow] = []
    seen: set[str] = set()

    def add(source: str, target: str, **kw) -> None:
        fid = f"{source}-to-{target}"
        n = 2
        while fid in seen:
            fid, n = f"{source}-to-{target}-{n}", n + 1
        seen.add(fid)
        out.append(GraphFlow(fid, source, target, **kw))

    for e in process.elements:
        for target in e.next:
            add(e.id, target, label=None)
        for c in e.conditions:
            add(e.id, c.next, label=_condition_words(plan, c.when), condition=c.when)
        if e.default:
            add(e.id, e.default, label=_default_words(plan, e), default=True)
        for b in e.boundary:
            for target in [b.next] if b.next else e.next:
                add(b.id, target, label=None)
    return out


def _condition_words(plan, condition: str) -> str:
    """The review's choices a condition stands for ("Trả lại, đề nghị bổ sung"), else the condition."""
    review = review_decision(plan)
    if review is not None and review.variable and review.variable in condition:
        labels = [review.choices[v] for v in review.choices if repr(v) in condition or f'"{v}"' in condition]
        if labels:
            return "; ".join(labels)
    return condition


def _default_words(plan, gateway) -> str | None:
    review = review_decision(plan)
    if review is not None and review.variable and any(review.variable in c.when for c in gateway.conditions):
        return review.label(review.default)
    return None
