"""The process as a picture people read: SVG (and PNG) drawn from ``planflow.bpmn.layout``.

One drawing per process, stacked (the main process, then each sub-process), each headed by
its name: lanes with their names written vertically at their left; BPMN shapes — circles
for events (thick for the end, a clock for timers, double for a boundary timer), rounded
boxes for tasks (an icon for a user, service or send task, three bars for a task done by
many units, a thick border and ⊞ for a call activity), diamonds for gateways (X exclusive,
+ parallel), arrows with their conditions' words and a slash on the default flow.
Vietnamese names are wrapped to fit (``planflow.bpmn.diagram_text``).

Given a ``PlanState`` (``planflow.bpmn.plan_state``), every element is coloured by where the
plan stands, tasks carry their counts ("187/265 đã báo cáo") and a legend heads the picture
(``planflow.bpmn.diagram_state``). Built with lxml, so the SVG is well-formed XML; PNG from
it with librsvg (``rsvg-convert``, Debian's librsvg2-bin), which shapes text with Pango.
"""

from __future__ import annotations

import math
import shutil
import subprocess

from lxml import etree

from planflow.bpmn import diagram_state as look
from planflow.bpmn.diagram_text import FONT_FAMILY, LEADING, fit, wrap
from planflow.bpmn.layout import Flow, Node, ProcessLayout
from planflow.bpmn.svg_draw import INK, SVG_NS, el, num, text_lines

MARGIN = 20.0
HEADING = 17.0  # px, a process's name above its drawing
NAME = 12.0  # px, an element's name (smaller only when it does not fit)
LANE = 13.0  # px, a lane's name
LABEL = 11.0  # px, a condition's words on a flow
A4_LANDSCAPE_MM = 297.0


# --- shapes --------------------------------------------------------------------------------


def _event(g, node: Node, style: look.Style) -> None:
    b = node.box
    r = b.width / 2
    width = 4.0 if node.kind == "endEvent" else 1.6
    el(g, "circle", cx=b.cx, cy=b.cy, r=r, fill=style.fill, stroke=style.stroke, stroke_width=width)
    if node.kind in ("boundaryEvent", "intermediateCatchEvent"):
        el(g, "circle", cx=b.cx, cy=b.cy, r=r - 3.5, fill="none", stroke=style.stroke, stroke_width=1.2)
    if node.timer:
        _clock(g, b.cx, b.cy, r - 7, style.stroke)
    if node.name:
        lines = wrap(node.name, 110.0, NAME - 1)
        text_lines(g, lines, b.cx, b.y + b.height + 4, NAME - 1)


def _clock(g, cx: float, cy: float, r: float, stroke: str) -> None:
    el(g, "circle", cx=cx, cy=cy, r=r, fill="#ffffff", stroke=stroke, stroke_width=1.2)
    for i in range(12):
        a = i * math.pi / 6
        el(g, "line", x1=cx + (r - 2.5) * math.cos(a), y1=cy + (r - 2.5) * math.sin(a),
            x2=cx + r * math.cos(a), y2=cy + r * math.sin(a), stroke=stroke, stroke_width=0.8)
    el(g, "path", d=f"M{num(cx)},{num(cy - r + 3)} L{num(cx)},{num(cy)} L{num(cx + r - 4)},{num(cy)}", fill="none",
        stroke=stroke, stroke_width=1.3)


def _gateway(g, node: Node, style: look.Style) -> None:
    b = node.box
    points = f"{num(b.cx)},{num(b.y)} {num(b.x + b.width)},{num(b.cy)} {num(b.cx)},{num(b.y + b.height)} {num(b.x)},{num(b.cy)}"
    el(g, "polygon", points=points, fill=style.fill, stroke=style.stroke, stroke_width=style.width)
    d = b.width * 0.2
    if node.kind == "parallelGateway":
        marks = f"M{num(b.cx - d)},{num(b.cy)} L{num(b.cx + d)},{num(b.cy)} M{num(b.cx)},{num(b.cy - d)} L{num(b.cx)},{num(b.cy + d)}"
    else:  # exclusive
        marks = (f"M{num(b.cx - d * .8)},{num(b.cy - d * .8)} L{num(b.cx + d * .8)},{num(b.cy + d * .8)} "
                 f"M{num(b.cx + d * .8)},{num(b.cy - d * .8)} L{num(b.cx - d * .8)},{num(b.cy + d * .8)}")
    el(g, "path", d=marks, stroke=style.stroke, stroke_width=4, fill="none")
    if node.name:
        text_lines(g, wrap(node.name, 120.0, NAME - 1), b.cx, b.y + b.height + 4, NAME - 1)


def _task(g, node: Node, style: look.Style, timers: bool = False) -> None:
    """A task; ``timers``: boundary events sit on its bottom edge, the name stays above them."""
    b = node.box
    call = node.kind == "callActivity"
    el(g, "rect", x=b.x, y=b.y, width=b.width, height=b.height, rx=9, fill=style.fill, stroke=style.stroke,
        stroke_width=style.width + (2.0 if call else 0.0))
    _ICONS.get(node.kind, lambda *_: None)(g, b.x + 6, b.y + 5, style.stroke)
    markers = [m for m, on in (("multi", node.multi_instance), ("call", call)) if on]
    left = b.cx - (len(markers) * 14 - 4) / 2
    for i, marker in enumerate(markers):
        (_bars if marker == "multi" else _plus)(g, left + i * 14, b.y + b.height - 14, style.stroke)
    # the name, above the markers and timers: under the icon, or (larger) from the top with
    # its first line clear of the icon
    bottom = 20.0 if timers else 15.0 if markers else 4.0
    top, name = 16.0, fit(node.name or node.id, b.width - 10, b.height - 16 - bottom, NAME)
    beside = fit(node.name or node.id, b.width - 10, b.height - 5 - bottom, NAME, first=b.width - 44)
    if beside.size > name.size:
        top, name = 5.0, beside
    text_lines(g, name.lines, b.cx, b.y + top + (b.height - top - bottom - name.height) / 2, name.size)


def _bars(g, x: float, y: float, stroke: str) -> None:
    for dx in (1, 5, 9):
        el(g, "line", x1=x + dx, y1=y, x2=x + dx, y2=y + 10, stroke=stroke, stroke_width=2)


def _plus(g, x: float, y: float, stroke: str) -> None:
    el(g, "rect", x=x, y=y, width=10, height=10, fill="none", stroke=stroke, stroke_width=1.2)
    el(g, "path", d=f"M{num(x + 5)},{num(y + 2)} v6 M{num(x + 2)},{num(y + 5)} h6", stroke=stroke, stroke_width=1.2)


def _user(g, x: float, y: float, stroke: str) -> None:
    el(g, "circle", cx=x + 6, cy=y + 3.5, r=3, fill="none", stroke=stroke, stroke_width=1.2)
    el(g, "path", d=f"M{num(x)},{num(y + 12)} q0,-5.5 6,-5.5 q6,0 6,5.5 z", fill="none", stroke=stroke,
        stroke_width=1.2)


def _service(g, x: float, y: float, stroke: str) -> None:
    cx, cy = x + 6, y + 6
    for i in range(8):
        a = i * math.pi / 4
        el(g, "line", x1=cx + 3 * math.cos(a), y1=cy + 3 * math.sin(a), x2=cx + 6 * math.cos(a),
            y2=cy + 6 * math.sin(a), stroke=stroke, stroke_width=2.2)
    el(g, "circle", cx=cx, cy=cy, r=3.8, fill="#ffffff", stroke=stroke, stroke_width=1.2)
    el(g, "circle", cx=cx, cy=cy, r=1.4, fill=stroke)


def _send(g, x: float, y: float, stroke: str) -> None:
    el(g, "rect", x=x, y=y + 1, width=13, height=9, fill=stroke)
    el(g, "path", d=f"M{num(x)},{num(y + 1)} l6.5,5 l6.5,-5", fill="none", stroke="#ffffff", stroke_width=1.1)


_ICONS = {"userTask": _user, "serviceTask": _service, "sendTask": _send}


def _node(g, node: Node, style: look.Style, timers: bool) -> None:
    if node.kind.endswith("Event"):
        _event(g, node, style)
    elif node.kind.endswith("Gateway"):
        _gateway(g, node, style)
    else:
        _task(g, node, style, timers)


# --- flows ---------------------------------------------------------------------------------


def _flow(g, flow: Flow) -> None:
    points = " ".join(f"{num(float(x))},{num(float(y))}" for x, y in flow.points)
    el(g, "polyline", points=points, fill="none", stroke=INK, stroke_width=1.4, marker_end="url(#arrow)")
    (x0, y0), (x1, y1) = flow.points[0], flow.points[1]
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    dx, dy = (x1 - x0) / length, (y1 - y0) / length
    if flow.default:  # the slash across the start of the default flow
        cx, cy = x0 + 11 * dx, y0 + 11 * dy
        el(g, "line", x1=cx - 6 * dy - 4 * dx, y1=cy + 6 * dx - 4 * dy, x2=cx + 6 * dy + 4 * dx,
            y2=cy - 6 * dx + 4 * dy, stroke=INK, stroke_width=1.6)
    if flow.label:  # by its first segment: left of its middle going up or down, under its start across
        lines = wrap(flow.label, 170.0, LABEL)
        height = len(lines) * LABEL * LEADING
        if abs(dy) > .5:
            x, y, anchor = x0 - 6, (y0 + y1) / 2 - height / 2, "end"
        else:
            x, y, anchor = x0 + 16 * dx, y0 + 5, "start" if dx > 0 else "end"
        text_lines(g, lines, x, y, LABEL, anchor=anchor, font_style="italic", stroke="#ffffff",
                   stroke_width=3, paint_order="stroke")


# --- the drawing ---------------------------------------------------------------------------


def _lanes(g, proc: ProcessLayout) -> None:
    pool = proc.box
    el(g, "rect", x=pool.x, y=pool.y, width=pool.width, height=pool.height, fill="#ffffff", stroke=INK,
        stroke_width=1.5)
    first = min((lane.box.x for lane in proc.lanes), default=pool.x)
    if first > pool.x:
        el(g, "rect", x=pool.x, y=pool.y, width=first - pool.x, height=pool.height, fill="#eceff1", stroke=INK,
            stroke_width=1.5)
    for lane in proc.lanes:
        b = lane.box
        el(g, "rect", x=b.x, y=b.y, width=b.width, height=b.height, fill="none", stroke=INK, stroke_width=1)
        el(g, "rect", x=b.x, y=b.y, width=30, height=b.height, fill="#f5f7f8", stroke=INK, stroke_width=1)
        name = fit(lane.name, b.height - 10, 32, LANE, bold=True)
        rotated = el(g, "g", transform=f"translate({num(b.x + 15 - name.height / 2)},{num(b.cy)}) rotate(-90)")
        text_lines(rotated, name.lines, 0.0, 0.0, name.size, weight="bold")


def _process(g, proc: ProcessLayout, state) -> None:
    _lanes(g, proc)
    for flow in proc.flows:
        _flow(g, flow)
    hosts = [n for n in proc.nodes.values() if not n.attached_to]
    attached = {n.attached_to for n in proc.nodes.values() if n.attached_to}
    for node in [*hosts, *(n for n in proc.nodes.values() if n.attached_to)]:  # boundary events on top
        status = state.of(proc.process_id, node.id).status if state is not None else None
        shape = el(g, "g", id=f"{proc.process_id}.{node.id}", class_=f"{node.kind} {status or ''}".strip())
        _node(shape, node, look.style(status), node.id in attached)
    if state is not None:
        for node in hosts:
            look.badge(g, node.box, state.of(proc.process_id, node.id))


def _defs(svg) -> None:
    defs = el(svg, "defs")
    marker = el(defs, "marker", id="arrow", viewBox="0 0 10 10", refX=10, refY=5, markerWidth=7, markerHeight=7,
                 orient="auto", markerUnits="userSpaceOnUse")
    el(marker, "path", d="M0,0 L10,5 L0,10 z", fill=INK)


def diagram_svg(layouts: list[ProcessLayout], state=None) -> str:
    """The processes as one SVG document (text), stacked, each under its name; ``state`` (a
    ``PlanState``) draws where the plan stands on it, under a legend."""
    width = max(p.box.x + p.box.width for p in layouts) + MARGIN
    svg = etree.Element(f"{{{SVG_NS}}}svg", nsmap={None: SVG_NS})
    el(svg, "title", f"Sơ đồ quy trình: {layouts[0].name}")
    _defs(svg)
    page = el(svg, "rect", x=0, y=0, fill="#ffffff")
    y = MARGIN
    if state is not None:
        y = look.legend(svg, state, MARGIN, y, width - 2 * MARGIN) + 10
    for proc in layouts:
        heading = wrap(proc.name, width - 2 * MARGIN, HEADING, bold=True)
        text_lines(svg, heading, MARGIN, y, HEADING, anchor="start", weight="bold")
        y += len(heading) * HEADING * LEADING + 14
        g = el(svg, "g", transform=f"translate(0,{num(y - proc.box.y)})")
        _process(g, proc, state)
        y += proc.box.height + 26 + 2 * MARGIN
    height = y - 2 * MARGIN + MARGIN
    svg.attrib.update({"width": num(width), "height": num(height), "viewBox": f"0 0 {num(width)} {num(height)}",
                       "font-family": FONT_FAMILY})
    page.attrib.update({"width": num(width), "height": num(height)})
    return etree.tostring(svg, encoding="unicode", xml_declaration=False)


# --- PNG -----------------------------------------------------------------------------------


class RenderError(RuntimeError):
    """The PNG could not be drawn (said why, and what to install)."""


def png_width(svg_width: float, dpi: int = 200) -> int:
    """Pixels across for a PNG printed at ``dpi`` across A4 landscape, never below the SVG's own."""
    return max(int(svg_width), round(A4_LANDSCAPE_MM / 25.4 * dpi))


def svg_to_png(svg: str, width: int | None = None) -> bytes:
    """The SVG as PNG, ``width`` px across (default: A4 landscape at 200 dpi), by librsvg."""
    exe = shutil.which("rsvg-convert")
    if exe is None:
        raise RenderError("rsvg-convert not found: install Debian's librsvg2-bin (apt-get install librsvg2-bin) "
                          "to write PNG, or write SVG (-o FILE.svg)")
    root = etree.fromstring(svg.encode())
    width = width or png_width(float(root.get("width")))
    done = subprocess.run([exe, "--format=png", f"--width={width}", "--keep-aspect-ratio",
                           "--background-color=white"], input=svg.encode(), capture_output=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        raise RenderError(f"rsvg-convert failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def svg_window(svg: str, x: float, width: float) -> str:
    """The same picture showing only the band from ``x``, ``width`` px across: a piece of a
    wide drawing at full size, for a screen that would shrink the whole of it."""
    root = etree.fromstring(svg.encode())
    root.set("width", num(float(width)))
    root.set("viewBox", f"{num(float(x))} 0 {num(float(width))} {root.get('height')}")
    return etree.tostring(root, encoding="unicode")


def svg_width(svg: str) -> float:
    """The drawing's width in px."""
    return float(etree.fromstring(svg.encode()).get("width"))


def render(plan, suffix: str, state=None) -> bytes:
    """The plan's diagram (``state``: where an instance stands, drawn on it) as the bytes of
    a ``.svg`` or ``.png`` file."""
    from planflow.bpmn.layout import layout

    svg = diagram_svg(layout(plan), state)
    return svg_to_png(svg) if suffix.lower() == ".png" else svg.encode()
