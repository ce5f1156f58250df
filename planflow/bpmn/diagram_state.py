"""Where the plan stands, drawn on its diagram: a colour per state, count badges, a legend in
Vietnamese (the states are ``planflow.bpmn.plan_state``'s)."""

from __future__ import annotations

from dataclasses import dataclass

from planflow.bpmn.diagram_text import LEADING, text_width
from planflow.bpmn.layout import Box
from planflow.bpmn.plan_state import ACTIVE, DONE, NOT_REACHED, OVERDUE, STALLED
from planflow.bpmn.svg_draw import INK, el, text_lines
from planflow.notifications.vn_format import short_datetime

BADGE = 11.0  # px


@dataclass(frozen=True)
class Style:
    fill: str
    stroke: str
    width: float = 1.6


PLAIN = Style("#ffffff", INK)
STYLES = {  # state -> (how it is drawn, its words in the legend)
    DONE: (Style("#e2f2df", "#2e7d32", 2.0), "Đã xong"),
    ACTIVE: (Style("#dceafc", "#1565c0", 3.2), "Đang thực hiện"),
    OVERDUE: (Style("#ffe8cc", "#d84315", 3.2), "Có đơn vị quá hạn"),
    STALLED: (Style("#fbd9d9", "#b71c1c", 3.2), "Cần xử lý (bước lỗi, thư không gửi được, sự cố)"),
    NOT_REACHED: (Style("#ffffff", "#9e9e9e", 1.4), "Chưa đến"),
}


def style(status: str | None) -> Style:
    """How an element in ``status`` is drawn (None: no state, the plain diagram)."""
    return PLAIN if status is None else STYLES[status][0]


def badge(g, box: Box, state) -> None:
    """The element's counts (``ElementState.badges``) in a tag over its top edge."""
    lines = state.badges()
    if not lines:
        return
    colour = style(state.status).stroke
    width = max(text_width(line, BADGE, bold=True) for line in lines) + 10
    height = len(lines) * BADGE * LEADING + 5
    x, y = box.cx - width / 2, box.y - height + 3  # above the task's icon
    el(g, "rect", x=x, y=y, width=width, height=height, rx=4, fill=colour, stroke="#ffffff", stroke_width=1)
    text_lines(g, lines, box.cx, y + 2.5, BADGE, weight="bold", fill="#ffffff")


def legend(svg, state, x: float, y: float, width: float) -> float:
    """The moment, the units reported and what each colour means; returns the y below it."""
    when = short_datetime(state.as_of)
    head = f"Tình hình lúc {when}: {state.reported}/{state.expected} đơn vị đã báo cáo"
    text_lines(svg, [head], x, y, 15.0, anchor="start", weight="bold")
    y += 15.0 * LEADING + 8
    cx = x
    for st, text in STYLES.values():
        item = 22 + text_width(text, 12.0) + 22
        if cx + item > x + width:
            cx, y = x, y + 24
        el(svg, "rect", x=cx, y=y, width=18, height=14, rx=3, fill=st.fill, stroke=st.stroke,
           stroke_width=min(st.width, 2.5))
        text_lines(svg, [text], cx + 24, y, 12.0, anchor="start")
        cx += item
    return y + 20
