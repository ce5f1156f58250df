"""The validated model of a process definition, its unit registry and its forms.

One model whatever the surface syntax: the YAML loader (``planflow.loader``) fills it;
the interpreter only ever sees these objects.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from functools import cached_property
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

ElementType = Literal[
    "startEvent",
    "endEvent",
    "serviceTask",
    "sendTask",
    "userTask",
    "callActivity",
    "exclusiveGateway",
    "parallelGateway",
]

# what a serviceTask's ``handler`` may name (planflow.services holds the functions)
SERVICE_HANDLERS = ("record", "aggregate")

# ids and codes end up in keys, file names and URLs: letters, digits and - _ . only
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _an_id(value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        shown = value if len(value) <= 60 else value[:60] + "…"
        raise ValueError(f"'{shown}' is not an id: use letters, digits and - _ . (at most 100 characters, "
                         "no spaces), e.g. so-noi-vu")
    return value


Id = Annotated[str, AfterValidator(_an_id)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimerStart(_Model):
    cron: str
    timezone: str | None = None
    line: int = 0


class Retry(_Model):
    retries: int = Field(3, ge=0, le=20)
    delay_s: list[float] = Field(default_factory=lambda: [2.0, 10.0, 60.0])


class Condition(_Model):
    when: str
    next: str


class Boundary(_Model):
    """A timer boundary event on a user task or call activity.

    ``after`` is an offset (``+5wd``, ``P7D``) from the task's due moment (``anchor: due``)
    or from the moment the task started (``anchor: start``). An interrupting timer closes
    what is still open and leaves by ``next`` (default: the task's own ``next``);
    a non-interrupting one sends an extra token to ``next`` and the task goes on.
    """

    id: Id
    after: str
    anchor: Literal["due", "start"] = "due"
    at: dt.time | None = None
    interrupting: bool = True
    next: str | None = None
    line: int = 0


class Escalation(_Model):
    after: str
    to: list[str]
    template: str
    line: int = 0


class Element(_Model):
    id: Id
    type: ElementType
    name: str | None = None
    stage: str | None = None
    lane: str | None = None
    next: list[str] = Field(default_factory=list)
    # start
    timer: TimerStart | None = None
    # service and send tasks
    handler: str | None = None
    template: str | None = None
    to: str | None = None
    retry: Retry | None = None
    # user tasks
    for_each: str | None = None
    form: str | None = None
    due: dict | str | None = None
    output: str | None = None  # instance variable that receives a single-unit task's answer
    # whether a unit that has answered may send a corrected answer: "before_due" (while the
    # task still waits on others and its due moment has not passed), or "none" (the default)
    corrections: Literal["none", "before_due"] = "none"
    reminders: list[str] = Field(default_factory=list)
    escalations: list[Escalation] = Field(default_factory=list)
    boundary: list[Boundary] = Field(default_factory=list)
    # call activity
    process: str | None = None
    # exclusive gateway
    conditions: list[Condition] = Field(default_factory=list)
    default: str | None = None
    line: int = 0

    @field_validator("next", mode="before")
    @classmethod
    def _listify(cls, value):
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    def targets(self) -> list[str]:
        """Every element this one can send a token to."""
        out = list(self.next)
        out += [c.next for c in self.conditions]
        if self.default:
            out.append(self.default)
        out += [b.next for b in self.boundary if b.next]
        return out


class Process(_Model):
    id: Id
    name: str | None = None
    elements: list[Element]
    line: int = 0

    def element(self, element_id: str) -> Element:
        return self._index()[element_id]

    def has(self, element_id: str) -> bool:
        """Whether the process has an element of that id."""
        return element_id in self._index()

    def _index(self) -> dict[str, Element]:
        cached = self.__dict__.get("_by_id")
        if cached is None:
            cached = {e.id: e for e in self.elements}
            object.__setattr__(self, "_by_id", cached)
        return cached

    @property
    def start(self) -> Element:
        return next(e for e in self.elements if e.type == "startEvent")

    def incoming(self, element_id: str) -> int:
        """How many flows lead into an element (a join waits for this many tokens)."""
        counts = self.__dict__.get("_incoming")
        if counts is None:
            counts = Counter(t for e in self.elements for t in e.targets())
            object.__setattr__(self, "_incoming", counts)
        return counts[element_id]


class Stage(_Model):
    id: Id
    name: str
    line: int = 0


class Signer(_Model):
    line1: str
    line2: str | None = None
    name: str | None = None  # null while not known (like the plan's number): the letters leave it out


class Document(_Model):
    """The plan as an official document (NĐ 30/2020 Điều 8)."""

    kind: str = "KẾ HOẠCH"
    number: str | None = None
    issuer: str
    place: str
    issued_on: dt.date | None = None
    title: str
    basis: str
    purposes: list[str]
    tasks: list[str]
    signer: Signer
    recipients: str
    note: str | None = None


class Definition(_Model):
    id: Id
    name: str
    version: int = 1
    year: int = Field(ge=1900, le=2200)
    timezone: str = "Asia/Ho_Chi_Minh"
    calendar: str = "vn-civil-service"
    registry: str
    forms: dict[str, str]
    templates: str | None = None
    document: Document
    stages: list[Stage]
    retry: Retry = Retry()
    elements: list[Element]
    subprocesses: list[Process] = Field(default_factory=list)
    line: int = 0

    @property
    def main(self) -> Process:
        return self.__dict__["_main"]

    def process(self, process_id: str) -> Process:
        if process_id == self.id:
            return self.main
        return next(p for p in self.subprocesses if p.id == process_id)

    def model_post_init(self, __context) -> None:
        object.__setattr__(self, "_main", Process(id=self.id, name=self.name, elements=self.elements))

    def stage_name(self, stage_id: str) -> str:
        return next(s.name for s in self.stages if s.id == stage_id)


# --- registry -------------------------------------------------------------------


class Unit(_Model):
    model_config = ConfigDict(extra="ignore", frozen=True)

    code: Id
    name: str
    kind: str
    groups: list[str] = Field(default_factory=list)
    parent: str | None = None
    head: str | None = None
    email: str | None = None
    admin_unit: str | None = None
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None

    def valid_on(self, day: dt.date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day <= self.valid_to
        )


class RegistryRoot(_Model):
    """The province-level body of a registry and its province's kind: a ``tinh`` reads "UBND tỉnh …" and
    "Tỉnh ủy", a ``thanh-pho`` (centrally governed city) "UBND thành phố …" and "Thành ủy"."""

    unit: Id  # code of the body in ``units`` (UBND tỉnh Hải Dương, UBND thành phố Hải Phòng)
    kind: Literal["tinh", "thanh-pho"]
    name: str | None = None  # the province's own name: Hải Dương
    gso_code: str | None = None  # its official code: 30
    party: Id | None = None  # code of its Tỉnh ủy / Thành ủy in ``units``, if there


class Registry(_Model):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Id
    name: str
    units: list[Unit]
    root: RegistryRoot | None = None

    def model_post_init(self, __context) -> None:
        object.__setattr__(self, "_by_code", {u.code: u for u in self.units})
        groups: dict[str, list[Unit]] = {}
        for u in self.units:
            for g in u.groups:
                groups.setdefault(g, []).append(u)
        object.__setattr__(self, "_groups", groups)

    def get(self, code: str) -> Unit | None:
        return self.__dict__["_by_code"].get(code)

    def __contains__(self, code: str) -> bool:
        return code in self.__dict__["_by_code"]

    @property
    def group_names(self) -> set[str]:
        return set(self.__dict__["_groups"])

    def group(self, name: str) -> list[Unit]:
        return self.__dict__["_groups"].get(name, [])


# --- forms ----------------------------------------------------------------------


class Item(_Model):
    code: Id
    title: str
    max: float
    auto_from_workflow: Literal["on_time"] | None = None  # scored by the engine: full marks when on time


class Group(_Model):
    code: Id
    title: str
    max: float
    plan_task: int | None = None
    items: list[Item]


class Band(_Model):
    label: str
    min: float


class Field_(_Model):
    name: str
    type: Literal["choice", "text"]
    choices: dict[str, str] | None = None
    required: bool = False
    label: str | None = None


class Form(_Model):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Id
    kind: Literal["criteria", "fields"]
    title: str
    scale_max: float | None = None
    step: float = 0.25
    groups: list[Group] = Field(default_factory=list)
    bands: list[Band] = Field(default_factory=list)
    not_classifiable: str = "Không đủ điều kiện xếp loại"
    fields: list[Field_] = Field(default_factory=list)

    @property
    def items(self) -> dict[str, Item]:
        return {i.code: i for g in self.groups for i in g.items}

    @property
    def decides(self) -> bool:
        """A fields form with a choice among decisions (a review), not a note (a revision)."""
        return self.kind == "fields" and any(f.type == "choice" for f in self.fields)

    @cached_property
    def bands_high_first(self) -> tuple[Band, ...]:
        """The bands, highest minimum first (the order a score is classified in), sorted once."""
        return tuple(sorted(self.bands, key=lambda b: -b.min))

    def classify(self, score: float | None) -> str:
        if score is None:
            return self.not_classifiable
        for band in self.bands_high_first:
            if score >= band.min:
                return band.label
        return self.not_classifiable
