"""Where each element of a process is drawn: one layout for the BPMN export's diagram (BPMNDI)
and the picture (SVG, PNG), left to right in swimlanes.

A layered layout of our own, not Graphviz: BPMN lanes are full-width horizontal bands in one
pool, one per body that acts, and every node must sit inside its lane's band; ``dot`` places
clusters where it likes (it cannot pin a cluster to a band that spans the whole drawing), so
snapping its result to lanes would keep little of it. The process graphs are small (tens of
nodes), so the simple layered method is enough: a node's column is the longest path to it
from the start (flows that go back, a loop's return, left out), columns are as wide as their
widest node, a lane's rows hold the nodes of one column that share the lane, and flows are
drawn with right angles: forward from the right side of a node to the left side of the next,
back (a loop) under the nodes, along the bottom of the lane.

Units are pixels as in BPMN DI: origin top-left, y grows down. The shipped plans' main process
is about 2060 by 750: on A4 landscape, about 7.5 px to the millimetre.
"""

from __future__ import annotations

from dataclasses import dataclass

from planflow.bpmn.graph import ProcessGraph, process_graphs

__all__ = ["Box", "Flow", "Lane", "Node", "ProcessLayout", "layout"]

SIZES = {"event": (36.0, 36.0), "gateway": (50.0, 50.0), "activity": (120.0, 80.0)}
POOL_LABEL = 30.0  # the pool's name, written vertically at its left
LANE_LABEL = 30.0  # each lane's name, the same way
GAP = 45.0  # between columns
ROW = 125.0  # height of a row of a lane
CORRIDOR = 25.0  # at a lane's bottom, where flows going back run
MARGIN = 20.0


@dataclass(frozen=True)
class Box:  # BPMN DI convention: pixels, origin top-left, y grows down
    x: float
    y: float
    width: float
    height: float

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2


@dataclass(frozen=True)
class Node:
    id: str  # the definition's element id (boundary events included)
    kind: str  # the BPMN element type: startEvent, userTask, exclusiveGateway, boundaryEvent, ...
    name: str  # Vietnamese name shown in the picture ("" for an unnamed gateway or event)
    lane: str | None  # lane id
    box: Box
    attached_to: str | None = None  # a boundary event's host
    multi_instance: bool = False  # drawn with the three-bar marker
    timer: bool = False  # drawn with the clock marker (timer start / boundary)


@dataclass(frozen=True)
class Flow:
    id: str  # sequence flow id, stable for a definition (the export uses the same)
    source: str
    target: str
    label: str | None  # a condition's words, or None
    default: bool
    points: tuple[tuple[float, float], ...]  # waypoints, first at the source's border, last at the target's


@dataclass(frozen=True)
class Lane:
    id: str
    name: str
    box: Box


@dataclass(frozen=True)
class ProcessLayout:
    process_id: str
    name: str
    box: Box  # the pool / participant
    lanes: tuple[Lane, ...]
    nodes: dict[str, Node]
    flows: tuple[Flow, ...]


def layout(plan) -> list[ProcessLayout]:
    """The main process first, then each sub-process (e.g. the district cycle), laid out
    left to right in lanes, readable when printed on A4 landscape."""
    memo_key = ("bpmn_layout",)
    if memo_key not in plan.memo:
        plan.memo[memo_key] = [layout_graph(g) for g in process_graphs(plan)]
    return plan.memo[memo_key]


def layout_graph(graph: ProcessGraph) -> ProcessLayout:
    hosts = {n.id: n.attached_to for n in graph.nodes if n.attached_to}
    placed = [n for n in graph.nodes if not n.attached_to]
    columns, back = _columns(graph, [n.id for n in placed], hosts)
    lane_ids = [lane.id for lane in graph.lanes] + ([None] if any(n.lane is None for n in placed) else [])
    rows = _rows(placed, columns)
    lanes, lane_box = _lanes(graph, lane_ids, rows)
    xs = _column_x(placed, columns)
    boxes = {}
    for n in placed:
        w, h = SIZES[_shape(n.kind)]
        col = columns[n.id]
        band = lane_box[n.lane]
        cx = xs[col] + _column_width(placed, columns, col) / 2
        cy = band.y + rows[n.id] * ROW + ROW / 2
        boxes[n.id] = Box(cx - w / 2, cy - h / 2, w, h)
    _attach_boundaries(graph, boxes)
    nodes = {n.id: Node(n.id, n.kind, n.name, n.lane, boxes[n.id], n.attached_to, n.multi_instance, n.timer)
             for n in graph.nodes}
    flows = tuple(Flow(f.id, f.source, f.target, f.label, f.default,
                       _route(boxes[f.source], boxes[f.target], f.source in hosts, f.id in back,
                              lane_box[nodes[f.source].lane], f.default))
                  for f in graph.flows)
    bottom = max((b.y + b.height for b in lane_box.values()), default=MARGIN + ROW)
    pool = Box(MARGIN, MARGIN, max(xs.values()) - MARGIN, bottom - MARGIN)
    lanes = tuple(Lane(lane.id, lane.name, Box(lane.box.x, lane.box.y, pool.width - POOL_LABEL, lane.box.height))
                  for lane in lanes)
    return ProcessLayout(graph.process_id, graph.name, pool, lanes, nodes, flows)


def _shape(kind: str) -> str:
    if kind.endswith("Event"):
        return "event"
    return "gateway" if kind.endswith("Gateway") else "activity"


def _columns(graph: ProcessGraph, ids: list[str], hosts: dict[str, str]) -> tuple[dict[str, int], set[str]]:
    """Each node's column (the longest forward path to it) and the ids of the flows that go back."""
    out_edges: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
    for f in graph.flows:
        out_edges[hosts.get(f.source, f.source)].append((f.target, f.id))
    back: set[str] = set()
    state: dict[str, int] = {}  # 1 on the path being walked, 2 done
    order: list[str] = []
    starts = [n.id for n in graph.nodes if n.kind == "startEvent"] + ids
    for root in starts:
        if root in state:
            continue
        stack = [(root, iter(out_edges[root]))]
        state[root] = 1
        while stack:
            node, edges = stack[-1]
            step = next(edges, None)
            if step is None:
                state[node] = 2
                order.append(node)
                stack.pop()
            elif state.get(step[0]) == 1:
                back.add(step[1])
            elif step[0] not in state:
                state[step[0]] = 1
                stack.append((step[0], iter(out_edges[step[0]])))
    column = {i: 0 for i in ids}
    for node in reversed(order):  # a topological order of the forward flows
        for target, fid in out_edges[node]:
            if fid not in back:
                column[target] = max(column[target], column[node] + 1)
    return column, back


def _rows(placed, columns: dict[str, int]) -> dict[str, int]:
    """A node's row in its lane: the nodes of one lane in one column stack, in the definition's order."""
    taken: dict[tuple, int] = {}
    rows = {}
    for n in placed:
        key = (n.lane, columns[n.id])
        rows[n.id] = taken.get(key, 0)
        taken[key] = rows[n.id] + 1
    return rows


def _lanes(graph: ProcessGraph, lane_ids: list, rows: dict[str, int]):
    names = {lane.id: lane.name for lane in graph.lanes}
    lane_of = {n.id: n.lane for n in graph.nodes}
    y = MARGIN
    lanes, boxes = [], {}
    for lane_id in lane_ids:
        count = 1 + max((r for i, r in rows.items() if lane_of[i] == lane_id), default=0)
        box = Box(MARGIN + POOL_LABEL, y, 0.0, count * ROW + CORRIDOR)
        boxes[lane_id] = box
        lanes.append(Lane(lane_id or "", names.get(lane_id, ""), box))
        y += box.height
    return [lane for lane in lanes if lane.id], boxes


def _column_width(placed, columns: dict[str, int], col: int) -> float:
    return max(SIZES[_shape(n.kind)][0] for n in placed if columns[n.id] == col)


def _column_x(placed, columns: dict[str, int]) -> dict[int, float]:
    """The left edge of each column, and after the last one the right edge of the drawing."""
    x = MARGIN + POOL_LABEL + LANE_LABEL + GAP
    out = {}
    last = max(columns.values(), default=-1)
    for col in range(last + 1):
        out[col] = x
        if any(columns[n.id] == col for n in placed):
            x += _column_width(placed, columns, col) + GAP
    out[last + 1] = x
    return out


def _attach_boundaries(graph: ProcessGraph, boxes: dict[str, Box]) -> None:
    """Boundary events sit on their host's bottom edge, from its right corner leftwards."""
    count: dict[str, int] = {}
    w, h = SIZES["event"]
    for n in graph.nodes:
        if n.attached_to:
            host = boxes[n.attached_to]
            i = count.get(n.attached_to, 0)
            count[n.attached_to] = i + 1
            cx = host.x + host.width - 25 - i * (w + 8)
            boxes[n.id] = Box(cx - w / 2, host.y + host.height - h / 2, w, h)


def _route(s: Box, t: Box, from_boundary: bool, back: bool, band: Box,
           default: bool = False) -> tuple[tuple[float, float], ...]:
    """Right-angled waypoints from the border of ``s`` to the border of ``t``: a gateway's
    branches leave from its top or bottom corner, its default from its right corner."""
    if back:
        low = max(band.y + band.height - CORRIDOR / 2, s.y + s.height + 12)
        return ((s.cx, s.y + s.height), (s.cx, low), (t.cx, low), (t.cx, t.y + t.height))
    end = (t.x, t.cy)
    if from_boundary:
        below = s.y + s.height + 12
        bend = t.x - GAP / 2
        return ((s.cx, s.y + s.height), (s.cx, below), (bend, below), (bend, t.cy), end)
    if abs(s.cy - t.cy) < 0.5:
        return ((s.x + s.width, s.cy), end)
    if s.width == SIZES["gateway"][0] and not default:
        corner = s.y if t.cy < s.cy else s.y + s.height
        return ((s.cx, corner), (s.cx, t.cy), end)
    start = (s.x + s.width, s.cy)
    bend = t.x - GAP / 2
    return (start, (bend, s.cy), (bend, t.cy), end)
