"""Which BPMN a planflow definition can be made of, and where a file steps outside it.

A BPMN file is read as the OMG schema allows (``planflow.bpmn.schema``); of that, planflow
runs processes of start and end events, user, service and send tasks, call activities,
exclusive and parallel gateways, parallel multi-instance over a unit collection, timer start
events and timer boundary events, in pools and lanes. Everything else (a message event, a
compensation, an inclusive gateway, an embedded sub-process…) is refused, each occurrence
located: line and column of its start tag, its id and name, and what to use instead.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cached_property
from xml.parsers import expat

from planflow.bpmn.schema import BPMN
from planflow.problems import Problem, printable, shorten

B = f"{{{BPMN}}}"
FLOW_NODES = ("startEvent", "endEvent", "userTask", "serviceTask", "sendTask", "callActivity", "exclusiveGateway",
              "parallelGateway")
ALLOWED = {  # parent tag -> the children planflow reads (documentation, extensionElements: everywhere)
    "definitions": {"collaboration", "process", "message", "signal", "error", "escalation", "itemDefinition"},
    "collaboration": {"participant"},
    "participant": set(),
    "process": {"laneSet", "sequenceFlow", "boundaryEvent", *FLOW_NODES},
    "laneSet": {"lane"},
    "lane": {"flowNodeRef", "childLaneSet"},
    "childLaneSet": {"lane"},
    "sequenceFlow": {"conditionExpression"},
    "startEvent": {"outgoing", "timerEventDefinition"},
    "endEvent": {"incoming"},
    "boundaryEvent": {"outgoing", "timerEventDefinition"},
    "timerEventDefinition": {"timeCycle", "timeDuration", "timeDate"},
    "multiInstanceLoopCharacteristics": {"loopDataInputRef", "inputDataItem"},
    **{t: {"incoming", "outgoing", "multiInstanceLoopCharacteristics"}
       for t in ("userTask", "serviceTask", "sendTask", "callActivity")},
    **{t: {"incoming", "outgoing"} for t in ("exclusiveGateway", "parallelGateway")},
}
ANYWHERE = {"documentation", "extensionElements"}
INSTEAD = {
    "inclusiveGateway": "dùng exclusiveGateway (một nhánh theo điều kiện) hoặc parallelGateway (mọi nhánh)",
    "eventBasedGateway": "dùng exclusiveGateway theo kết quả của bước trước, hoặc sự kiện hẹn giờ trên việc",
    "complexGateway": "dùng exclusiveGateway hoặc parallelGateway",
    "messageEventDefinition": "planflow gửi thư bằng sendTask và chờ trả lời bằng userTask; "
                              "hẹn giờ dùng timerEventDefinition",
    "signalEventDefinition": "dùng sendTask để báo tin, userTask để chờ",
    "compensateEventDefinition": "planflow không hoàn tác bước đã làm: dùng exclusiveGateway trả về bước sửa "
                                 "(như «revise»)",
    "errorEventDefinition": "lỗi của bước tự động được thử lại (retry), không có sự kiện lỗi",
    "escalationEventDefinition": "thang nhắc việc ghi trong extensionElements (planflow:escalation) của userTask",
    "conditionalEventDefinition": "dùng exclusiveGateway với conditionExpression",
    "terminateEventDefinition": "dùng endEvent thường",
    "linkEventDefinition": "nối bằng sequenceFlow",
    "intermediateCatchEvent": "dùng timerEventDefinition trên việc (boundaryEvent) hoặc userTask để chờ",
    "intermediateThrowEvent": "dùng sendTask",
    "subProcess": "viết quy trình con trong «subprocesses» và gọi bằng callActivity",
    "transaction": "viết quy trình con trong «subprocesses» và gọi bằng callActivity",
    "task": "chọn loại việc: userTask, serviceTask hoặc sendTask",
    "manualTask": "dùng userTask", "receiveTask": "dùng userTask", "scriptTask": "dùng serviceTask",
    "businessRuleTask": "dùng serviceTask hoặc exclusiveGateway",
    "standardLoopCharacteristics": "dùng multiInstanceLoopCharacteristics song song trên một nhóm đơn vị",
    "messageFlow": "planflow gửi thư bằng sendTask",
}

__all__ = ["BpmnProblem", "positions", "refused"]


@dataclass(frozen=True)
class BpmnProblem(Problem):
    """A problem in a BPMN file, at a line and column."""

    column: int = 0
    name: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        named = f" «{self.name}»" if self.name else ""
        what = f" {self.kind} '{shorten(str(self.element), 80)}'{named}:" if self.element else ""
        return printable(f"{where}:{what} {self.message}")


class Positions:
    """Element -> (line, column) of its start tag in a parsed file (``positions``), read only
    when a problem must be located: a file that has none is read once, by lxml alone."""

    def __init__(self, root, data: bytes):
        self._root, self._data = root, data

    @cached_property
    def _table(self) -> dict:
        nodes = (n for n in self._root.iter() if isinstance(n.tag, str))
        return dict(zip(nodes, positions(self._data)))  # noqa: B905 - expat may stop short: lxml's line then

    def get(self, node, default=None):
        return self._table.get(node, default)

    def __getitem__(self, node) -> tuple[int, int]:
        return self._table[node]


def positions(data: bytes) -> list[tuple[int, int]]:
    """(line, column) of each element's start tag, in document order, both counted from 1
    (as far as expat reads the file; an element past that is said at its line, lxml's)."""
    out: list[tuple[int, int]] = []
    parser = expat.ParserCreate()
    parser.StartElementHandler = lambda *_: out.append((parser.CurrentLineNumber, parser.CurrentColumnNumber + 1))
    with contextlib.suppress(expat.ExpatError):
        parser.Parse(data, True)
    return out


def refused(root, where: Positions, file: str) -> list[BpmnProblem]:
    """Every element outside planflow's subset (``where``: element -> (line, column))."""
    problems = []
    out_of_subset = set()
    for node in root.iter():
        parent = node.getparent()
        if parent is None or not isinstance(node.tag, str) or not node.tag.startswith(B):
            continue
        if parent in out_of_subset:  # inside a refused element: said once, for that element
            out_of_subset.add(node)
            continue
        if not parent.tag.startswith(B) or parent.tag == B + "extensionElements":
            continue
        tag, parent_tag = node.tag[len(B):], parent.tag[len(B):]
        if tag in ANYWHERE or tag in ALLOWED.get(parent_tag, set()):
            problems += _attributes(node, tag, where, file)
            continue
        out_of_subset.add(node)
        problems.append(_refusal(node, tag, parent_tag, where, file))
    return problems


def _refusal(node, tag: str, parent_tag: str, where: Positions, file: str) -> BpmnProblem:
    """One element out of the subset: an event's definition is said of its event (its id and name)."""
    line, column = where.get(node, (node.sourceline or 0, 0))
    host = node.getparent() if tag.endswith("EventDefinition") else node
    kinds = [c.tag[len(B):] for c in node if isinstance(c.tag, str) and c.tag.endswith("EventDefinition")]
    what = f"{host.tag[len(B):]} với {tag}" if host is not node else (f"{tag} với {kinds[0]}" if kinds else tag)
    instead = INSTEAD.get(kinds[0] if kinds else tag) or INSTEAD.get(tag) or (
        "planflow đọc ở đây: " + (", ".join(sorted(ALLOWED.get(parent_tag, ()))) or "không phần tử con nào"))
    return BpmnProblem(file, line, host.get("id"), f"{what} (trong {parent_tag}) không có trong planflow: {instead}",
                       kind=host.tag[len(B):], column=column, name=host.get("name"))


def _attributes(node, tag: str, where: Positions, file: str) -> list[BpmnProblem]:
    """What an allowed element may still ask that planflow does not do."""
    said = None
    if tag == "multiInstanceLoopCharacteristics" and node.get("isSequential") == "true":
        said = "multiInstanceLoopCharacteristics tuần tự (isSequential) không có trong planflow: các đơn vị làm song song"
    elif node.get("isForCompensation") == "true":
        said = f"{tag} bù trừ (isForCompensation) không có trong planflow: {INSTEAD['compensateEventDefinition']}"
    if said is None:
        return []
    line, column = where.get(node, (node.sourceline or 0, 0))
    host = node if node.get("id") else node.getparent()
    return [BpmnProblem(file, line, host.get("id"), said, kind=host.tag[len(B):], column=column, name=host.get("name"))]

