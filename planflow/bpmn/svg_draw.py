"""The few SVG primitives the diagram is drawn with, on lxml elements."""

from __future__ import annotations

from lxml import etree

from planflow.bpmn.diagram_text import LEADING

SVG_NS = "http://www.w3.org/2000/svg"
INK = "#212121"


def num(value) -> str:
    """A coordinate as SVG writes it: one decimal at most."""
    return f"{value:.1f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def el(parent, tag: str, text: str | None = None, **attrs):
    """A child element; ``font_size`` -> ``font-size``, a trailing ``_`` dropped."""
    node = etree.SubElement(parent, f"{{{SVG_NS}}}{tag}",
                            {k.rstrip("_").replace("_", "-"): num(v) for k, v in attrs.items()})
    if text is not None:
        node.text = text
    return node


def text_lines(parent, lines: list[str], x: float, y_top: float, size: float, *, anchor: str = "middle",
               weight: str = "normal", fill: str = INK, **attrs) -> None:
    """Lines of text, the first one's top at ``y_top``."""
    text = el(parent, "text", x=x, y=y_top, font_size=size, text_anchor=anchor, font_weight=weight, fill=fill,
              **attrs)
    for i, line in enumerate(lines):
        el(text, "tspan", line, x=x, dy=f"{size * (0.95 if i == 0 else LEADING):.1f}")
