"""The few pieces ``planflow.charts`` draws its two charts with, as SVG: a page, panels with
their frame, grid and ticks, a legend, the red-to-green colours of the bands.

SVG rather than a plotting library's PNG: a chart is a few dozen lines and rectangles, drawn
in a millisecond, sharp at any zoom in the Prefect UI (as the process diagram is), and a flow
run no longer imports a plotting library to draw it (≈ 1 s of every run's CPU did). Text is
DejaVu Sans, measured as the diagram measures it (``planflow.bpmn.diagram_text``), which has
every Vietnamese diacritic; a PNG, where one is wanted, is librsvg's (``diagram.svg_to_png``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from lxml import etree

from planflow.bpmn.diagram_text import FONT_FAMILY, LEADING, text_width
from planflow.bpmn.svg_draw import INK, SVG_NS, el, num, text_lines

WIDTH, HEIGHT = 1000, 340  # px: the width of the Prefect UI's artifact panel
TITLE, LABEL, TICK = 15.0, 14.0, 12.5  # px: the chart's title, a panel's title and axis label, ticks
GRID, FRAME = "#e4e4e4", "#444444"
# ColorBrewer's RdYlGn (red, yellow, green), as a plotting library's "RdYlGn" colour map
_RD_YL_GN = ["#a50026", "#d73027", "#f46d43", "#fdae61", "#fee08b", "#ffffbf", "#d9ef8b", "#a6d96a",
             "#66bd63", "#1a9850", "#006837"]


def page(title: str):
    """An SVG of the chart's size, white, ``title`` centred on top."""
    svg = etree.Element(f"{{{SVG_NS}}}svg", nsmap={None: SVG_NS}, width=str(WIDTH), height=str(HEIGHT),
                        viewBox=f"0 0 {WIDTH} {HEIGHT}")
    svg.set("font-family", FONT_FAMILY)
    el(svg, "title", title)
    el(svg, "rect", x=0, y=0, width=WIDTH, height=HEIGHT, fill="#ffffff")
    el(svg, "text", title, x=WIDTH / 2, y=20, font_size=TITLE, text_anchor="middle", fill=INK)
    return svg


def document(svg) -> str:
    return etree.tostring(svg, encoding="unicode")


@dataclass
class Panel:
    """A plotting area at (``x``, ``y``), ``w`` by ``h`` px, mapping data ranges onto it."""

    x: float
    y: float
    w: float
    h: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def px(self, value: float) -> float:
        lo, hi = self.x_range
        return self.x + (value - lo) / ((hi - lo) or 1) * self.w

    def py(self, value: float) -> float:
        lo, hi = self.y_range
        return self.y + self.h - (value - lo) / ((hi - lo) or 1) * self.h


def panels(count: int, left: float, right: float, top: float, bottom: float, gap: float) -> list[tuple]:
    """``count`` equal panels side by side between the margins: (x, y, w, h) each."""
    w = (WIDTH - left - right - gap * (count - 1)) / count
    return [(left + i * (w + gap), top, w, HEIGHT - top - bottom) for i in range(count)]


def nice_step(top: float, most: int = 8) -> int:
    """The smallest whole step among 1, 2, 2.5, 3, 5 × 10ⁿ that gives at most ``most`` ticks
    from 0 to ``top``."""
    for power in range(12):
        for base in (1, 2, 2.5, 3, 5):
            step = base * 10 ** power
            if step == int(step) and math.floor(top / step) + 1 <= most:
                return int(step)
    return 10 ** 12


def value_ticks(top: float, most: int = 8) -> list[int]:
    step = nice_step(top, most)
    return list(range(0, int(top) + 1, step))


def day_ticks(start: dt.date, end: dt.date, most: int = 5) -> list[dt.date]:
    """Days to mark between ``start`` and ``end``: every day, or the days of the month 1, 1+k,
    1+2k… (k = 2, 3, 7, 14), or the first of every month or few months — at most ``most``."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    for step in (1, 2, 3, 7, 14):
        marked = [d for d in days if (d.day - 1) % step == 0 and d.day + step <= 32 or step == 1]
        if len(marked) <= most:
            return marked
    firsts = [d for d in days if d.day == 1]
    every = max(1, math.ceil(len(firsts) / most))
    return firsts[::every]


def frame(svg, p: Panel, title: str) -> None:
    """The panel's border and its title above it."""
    el(svg, "rect", x=p.x, y=p.y, width=p.w, height=p.h, fill="none", stroke=FRAME, stroke_width=0.8)
    el(svg, "text", title, x=p.x + p.w / 2, y=p.y - 8, font_size=LABEL, text_anchor="middle", fill=INK)


def x_axis(svg, p: Panel, ticks: list[tuple[float, str]], grid: bool = True) -> None:
    """Ticks under the panel at data values, labelled; light grid lines up the panel."""
    for value, label in ticks:
        x = p.px(value)
        if grid:
            el(svg, "line", x1=x, y1=p.y, x2=x, y2=p.y + p.h, stroke=GRID, stroke_width=0.8)
        el(svg, "line", x1=x, y1=p.y + p.h, x2=x, y2=p.y + p.h + 4, stroke=FRAME, stroke_width=0.8)
        el(svg, "text", label, x=x, y=p.y + p.h + 6 + TICK, font_size=TICK, text_anchor="middle", fill=INK)


def y_axis(svg, p: Panel, ticks: list[tuple[float, str]], grid: bool = True) -> None:
    """Ticks left of the panel at data values, labelled (each label may be several lines)."""
    for value, label in ticks:
        y = p.py(value)
        if grid:
            el(svg, "line", x1=p.x, y1=y, x2=p.x + p.w, y2=y, stroke=GRID, stroke_width=0.8)
        el(svg, "line", x1=p.x - 4, y1=y, x2=p.x, y2=y, stroke=FRAME, stroke_width=0.8)
        lines = label.split("\n")  # centred on the tick
        text_lines(svg, lines, p.x - 7, y - len(lines) * TICK * LEADING / 2, TICK, anchor="end")


def legend(svg, items: list[tuple[dict, str]], y: float) -> None:
    """A row of (line style, words) centred at ``y``: a short line drawn as the chart draws it."""
    sample, space = 28.0, 28.0
    widths = [sample + 8 + text_width(words, TICK) for _, words in items]
    x = (WIDTH - sum(widths) - space * (len(items) - 1)) / 2
    for (style, words), w in zip(items, widths):
        el(svg, "line", x1=x, y1=y, x2=x + sample, y2=y, **style)
        el(svg, "text", words, x=x + sample + 8, y=y + TICK * 0.35, font_size=TICK, fill=INK)
        x += w + space


def band_colors(count: int) -> list[str]:
    """``count`` colours from green (the best band) to red, as 0.9 down to 0.1 of RdYlGn."""
    step = 0.8 / max(count - 1, 1)
    return [_red_yellow_green(0.9 - i * step) for i in range(count)]


def _red_yellow_green(at: float) -> str:
    scaled = at * (len(_RD_YL_GN) - 1)
    i = min(int(scaled), len(_RD_YL_GN) - 2)
    a, b = _rgb(_RD_YL_GN[i]), _rgb(_RD_YL_GN[i + 1])
    t = scaled - i
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def vertical_text(svg, words: str, x: float, y: float) -> None:
    """``words`` written upwards, centred at (``x``, ``y``): an axis's name."""
    el(svg, "text", words, x=x, y=y, font_size=TICK, text_anchor="middle", fill=INK,
       transform=f"rotate(-90 {num(x)} {num(y)})")
