"""What BPMN has no element for, in the planflow namespace of a BPMN file's extension elements.

Both ways in one place, so that what the export writes the import reads back: the plan's own
data (its registry, forms, calendar, templates, stages, retry, the plan as an official
document) on the main process; on each flow node its stage, lane, units (``for_each``, as
written: ``communes of scope``), form, handler, template, recipients, due rule on the business
calendar (as YAML, so dates and numbers keep their type), reminders, escalation ladder and
retry; on a start event its time zone; on a boundary event its offset, anchor and time of day.
Attribute names are the definition's own keys.
"""

from __future__ import annotations

import yaml
from lxml import etree

NS = "urn:planflow:bpmn:1"  # a name, not an address
PF = f"{{{NS}}}"

ELEMENT_TEXT = ("stage", "lane", "handler", "template", "to", "for_each", "form", "output")
PLAN_TEXT = ("version", "year", "timezone", "calendar", "registry", "templates")
DOCUMENT_TEXT = ("kind", "number", "issuer", "place", "issued_on", "title", "basis", "recipients", "note")

__all__ = ["NS", "BadExtension", "boundary_from_xml", "boundary_to_xml", "element_from_xml", "element_to_xml", "plan_from_xml",
           "plan_to_xml"]


class BadExtension(ValueError):
    """A planflow extension a hand edit broke (a number that is not one, YAML that does not
    parse); ``node`` is where, for the import's located error."""

    def __init__(self, node, message: str):
        super().__init__(message)
        self.node = node


def _number(node, name: str, kind, default: str | None = None):
    text = node.get(name, default)
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise BadExtension(node, f"planflow:{etree.QName(node).localname} {name}=\"{text}\" không phải là số "
                                 f"/ not a number") from None


def _sub(parent, tag: str, attrs: dict | None = None, text: str | None = None):
    node = etree.SubElement(parent, PF + tag, {k: str(v) for k, v in (attrs or {}).items() if v is not None})
    if text is not None:
        node.text = text
    return node


def _attrs(node, names) -> dict:
    return {n: node.get(n) for n in names if node.get(n) is not None}


def _retry_to_xml(parent, retry) -> None:
    if retry is not None:
        _sub(parent, "retry", {"retries": retry.retries, "delay_s": " ".join(repr(d) for d in retry.delay_s)})


def _retry_from_xml(node) -> dict | None:
    if node is None:
        return None
    try:
        delays = [float(d) for d in node.get("delay_s", "").split()]
    except ValueError:
        raise BadExtension(node, f"planflow:retry delay_s=\"{node.get('delay_s')}\" không phải là các số giây "
                                 "/ not numbers of seconds") from None
    return {"retries": _number(node, "retries", int, "3"), "delay_s": delays}


def element_to_xml(element, parent) -> None:
    """The planflow properties of an element, as a ``pf:element`` under ``parent`` (when it has any)."""
    attrs = {name: getattr(element, name) for name in ELEMENT_TEXT if getattr(element, name) is not None}
    if element.timer is not None and element.timer.timezone is not None:
        attrs["timezone"] = element.timer.timezone
    children = element.due is not None or element.reminders or element.escalations or element.retry is not None
    if not attrs and not children:
        return
    node = _sub(parent, "element", attrs)
    if element.due is not None:
        _sub(node, "due", text=yaml.safe_dump(element.due, default_flow_style=True, allow_unicode=True).strip())
    for offset in element.reminders:
        _sub(node, "reminder", {"offset": offset})
    for rung in element.escalations:
        step = _sub(node, "escalation", {"after": rung.after, "template": rung.template})
        for who in rung.to:
            _sub(step, "to", text=who)
    _retry_to_xml(node, element.retry)


def element_from_xml(node) -> dict:
    """The fields ``element_to_xml`` wrote (``{}`` for None); ``timezone`` for the start timer's."""
    if node is None:
        return {}
    out = _attrs(node, (*ELEMENT_TEXT, "timezone"))
    due = node.find(PF + "due")
    if due is not None:
        try:
            out["due"] = yaml.safe_load(due.text or "")
        except yaml.YAMLError as exc:
            raise BadExtension(due, f"planflow:due không đọc được như YAML / not YAML: "
                                    f"{getattr(exc, 'problem', None) or exc}") from None
    reminders = [r.get("offset") for r in node.findall(PF + "reminder")]
    if reminders:
        out["reminders"] = reminders
    ladder = [{"after": s.get("after"), "template": s.get("template"),
               "to": [t.text or "" for t in s.findall(PF + "to")]} for s in node.findall(PF + "escalation")]
    if ladder:
        out["escalations"] = ladder
    retry = _retry_from_xml(node.find(PF + "retry"))
    if retry is not None:
        out["retry"] = retry
    return out


def boundary_to_xml(boundary, parent) -> None:
    _sub(parent, "boundary", {"after": boundary.after, "anchor": boundary.anchor,
                              "at": boundary.at.isoformat() if boundary.at else None, "next": boundary.next})


def boundary_from_xml(node) -> dict:
    return _attrs(node, ("after", "anchor", "at", "next")) if node is not None else {}


def plan_to_xml(definition, parent) -> None:
    """The definition's own data (all but its processes), as a ``pf:plan`` under ``parent``."""
    node = _sub(parent, "plan", {k: getattr(definition, k) for k in PLAN_TEXT})
    for form_id, path in definition.forms.items():
        _sub(node, "form", {"id": form_id, "path": path})
    for stage in definition.stages:
        _sub(node, "stage", {"id": stage.id, "name": stage.name})
    _retry_to_xml(node, definition.retry)
    doc = definition.document
    values = {k: getattr(doc, k) for k in DOCUMENT_TEXT}
    values["issued_on"] = doc.issued_on.isoformat() if doc.issued_on else None
    document = _sub(node, "document", values)
    for purpose in doc.purposes:
        _sub(document, "purpose", text=purpose)
    for task in doc.tasks:
        _sub(document, "task", text=task)
    _sub(document, "signer", doc.signer.model_dump())


def plan_from_xml(node) -> dict:
    """The fields ``plan_to_xml`` wrote, as the definition's YAML has them (``{}`` for None)."""
    if node is None:
        return {}
    out: dict = _attrs(node, PLAN_TEXT)
    for key in ("version", "year"):
        if key in out:
            out[key] = _number(node, key, int)
    out["forms"] = {f.get("id"): f.get("path") for f in node.findall(PF + "form")}
    out["stages"] = [_attrs(s, ("id", "name")) for s in node.findall(PF + "stage")]
    retry = _retry_from_xml(node.find(PF + "retry"))
    if retry is not None:
        out["retry"] = retry
    doc = node.find(PF + "document")
    if doc is not None:
        document = {k: doc.get(k) for k in DOCUMENT_TEXT if k != "note" or doc.get(k) is not None}
        document["purposes"] = [p.text or "" for p in doc.findall(PF + "purpose")]
        document["tasks"] = [t.text or "" for t in doc.findall(PF + "task")]
        signer = doc.find(PF + "signer")
        document["signer"] = {k: signer.get(k) for k in ("line1", "line2", "name")} if signer is not None else {}
        out["document"] = document
    return out
