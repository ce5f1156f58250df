"""A plan instance's diagram with where it stands drawn on it, as Markdown for its Prefect
artifact (``flows/diagram_artifact.py`` publishes it, as ``planflow.charts`` is published).

The Prefect UI renders a Markdown image (``![…](data:…)``) as an ``<img>`` scaled to the
artifact panel's width (CSS ``max-width: 100%``; raw HTML there is sanitized and an inline
``<svg>`` is clipped, not scrolled), and an image artifact prints its URL — here the whole
``data:`` URI — under the picture. So: the SVG as ``data:image/svg+xml;base64``, sharp at any
zoom, a few tens of kB, its text set by the viewer's browser; the same state in words under
it; then, for a drawing wider than the panel, the picture again in pieces the panel shows at
full size, left to right.
"""

from __future__ import annotations

import base64
import datetime as dt
import math

from planflow.bpmn.diagram import diagram_svg, svg_width, svg_window
from planflow.bpmn.layout import layout
from planflow.bpmn.plan_state import ACTIVE, OVERDUE, STALLED, PlanState, plan_state
from planflow.notifications.vn_format import short_datetime

TITLE = "Sơ đồ quy trình và tình hình"
PANEL = 1000.0  # px: about the width the Prefect UI gives an artifact on a laptop's screen
OVERLAP = 160.0  # px: more than a task is wide
WORDS = {STALLED: "Cần xử lý", OVERDUE: "Có đơn vị quá hạn", ACTIVE: "Đang thực hiện"}


def state_lines(state: PlanState, layouts) -> list[str]:
    """The elements active, overdue or stalled, worst first, in words with their counts."""
    found = []
    for proc in layouts:
        for node in proc.nodes.values():
            st = state.of(proc.process_id, node.id)
            if st.status in WORDS and node.name:
                counts = f" — {', '.join(st.badges())}" if st.badges() else ""
                found.append((list(WORDS).index(st.status), f"- **{WORDS[st.status]}:** {node.name}{counts}"))
    return [line for _, line in sorted(found, key=lambda f: f[0])]


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def pieces(svg: str) -> list[str]:
    """A drawing wider than the panel in pieces the panel shows at full size, each overlapping
    the next by a task's width at least (a task cut at one edge is whole in the next piece);
    none for a drawing
    that fits, or nearly."""
    width = svg_width(svg)
    if width <= PANEL * 1.25:  # shrunk to 80 % at most: still readable whole
        return []
    count = math.ceil((width - OVERLAP) / (PANEL - OVERLAP))
    step = (width - PANEL) / (count - 1)
    return [svg_window(svg, i * step, PANEL) for i in range(count)]


def state_markdown(engine, root_id: int, as_of: dt.datetime, progress=None) -> str:
    """Instance ``root_id`` at ``as_of``: heading, the diagram with its state drawn, the
    state in words, the diagram in pieces at full size (``progress``: see ``plan_state``)."""
    plan = engine.plan
    state = plan_state(engine, root_id, as_of, progress)
    layouts = layout(plan)
    svg = diagram_svg(layouts, state)
    lines = [f"# {TITLE} lúc {short_datetime(state.as_of)}", "",
             f"**{state.reported}/{state.expected} đơn vị đã báo cáo.** Màu của từng bước: xem chú giải trên sơ đồ.",
             "", f"![{TITLE}]({data_uri(svg)})", ""]
    lines += state_lines(state, layouts) or ["- Không có bước nào đang thực hiện."]
    parts = pieces(svg)
    if parts:
        lines += ["", "## Sơ đồ phóng to, từ trái sang phải", ""]
        lines += [f"![Phần {i}/{len(parts)}]({data_uri(p)})\n" for i, p in enumerate(parts, 1)]
    return "\n".join(lines) + "\n"
