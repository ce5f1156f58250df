"""The OMG BPMN 2.0 schema (``xsd/``, see its SOURCE.md) and the namespaces of a BPMN file.

``check_schema`` validates a document and raises ``SchemaProblem`` with every violation
located (line, column), for the export (a bug of ours) and the import (a file we refuse) alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from lxml import etree

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

__all__ = ["BPMN", "BPMNDI", "DC", "DI", "XSI", "SchemaProblem", "check_schema", "schema"]


@dataclass(frozen=True)
class Violation:
    line: int
    column: int
    message: str


class SchemaProblem(ValueError):
    """A document that is not BPMN 2.0 as the OMG schema says; ``violations`` has each, located."""

    def __init__(self, what: str, violations: list[Violation]):
        self.violations = violations
        shown = "; ".join(f"line {v.line}, column {v.column}: {v.message}" for v in violations[:10])
        super().__init__(f"{what}: not valid BPMN 2.0 XML (OMG schema): {shown}")


@lru_cache(maxsize=1)
def schema() -> etree.XMLSchema:
    with resources.as_file(resources.files("planflow.bpmn") / "xsd" / "BPMN20.xsd") as path:
        return etree.XMLSchema(etree.parse(str(path)))


def check_schema(data, what: str) -> None:
    """Raise ``SchemaProblem`` naming every violation of the BPMN 2.0 schema in ``data`` (bytes or a parsed tree)."""
    tree = etree.ElementTree(etree.fromstring(data)) if isinstance(data, bytes) else data
    xsd = schema()
    if not xsd.validate(tree):
        raise SchemaProblem(what, [Violation(e.line, e.column, e.message) for e in xsd.error_log])
