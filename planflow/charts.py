"""A picture of progress (issue 10): two charts drawn from the store, as SVG.

* reports received over time: per tier (sở/ban/ngành, UBND cấp huyện, UBND cấp xã) the
  number of units that sent their self-evaluation, day by day (Vietnam time), against the
  number asked (a horizontal line) and the tier's due date(s) (vertical lines);
* classifications: per tier, how many units are in each of the plan's bands (read from
  its criteria form), "không đủ điều kiện xếp loại" and "chưa báo cáo".

``charts_markdown`` embeds both in Markdown (``data:image/svg+xml`` URIs, as the process
diagram's artifact does) for a Prefect artifact; ``chart_svgs`` gives the drawings,
``chart_pngs`` / ``write_pngs`` the same as PNG images 1000 px wide (librsvg), e.g. next to
the report documents. Drawn by ``planflow.chart_svg`` (why SVG: its docstring).
"""

from __future__ import annotations

import datetime as dt
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from planflow import chart_svg as draw
from planflow import store as s
from planflow.aggregation import GROUP_NAMES, GROUP_ORDER, group_of, unit_results
from planflow.bpmn.state_markdown import data_uri
from planflow.progress import units_asked

NOT_REPORTED = "Chưa báo cáo"
RECEIVED_TITLE = "Báo cáo tự đánh giá nhận được theo ngày"
CLASSES_TITLE = "Kết quả xếp loại theo cấp"
FILES = {"received": "bieu-do-bao-cao-nhan-duoc.png", "classes": "bieu-do-xep-loai.png"}
_TIER_COLORS = {"department": "#1f77b4", "district": "#ff7f0e", "commune": "#2ca02c"}
_GREY, _LIGHT, _DUE = "#636363", "#d9d9d9", "#d62728"


@dataclass
class Tier:
    """One tier of units as the charts draw it, at the moment asked."""

    key: str
    name: str
    asked: int = 0
    received: list[dt.date] = field(default_factory=list)  # the day of each report, Vietnam time
    due: set[dt.date] = field(default_factory=set)
    classes: dict[str, int] = field(default_factory=dict)


def tiers_at(engine, root_id: int, as_of: dt.datetime) -> list[Tier]:
    """The tiers the plan asks, each with its counts at ``as_of`` (read from the store):
    the units asked, each report's day, the due days, the units in each class."""
    plan = engine.plan
    tz = plan.calendar.tz
    form = next(f for f in plan.forms.values() if f.kind == "criteria")
    labels = [b.label for b in sorted(form.bands, key=lambda b: -b.min)] + [form.not_classifiable, NOT_REPORTED]
    with engine.db.connect() as conn:
        tree = s.tree_ids(conn, root_id)
        results = {r.code: r for r in unit_results(conn, plan, tree)}
        closed = closed_at(conn, tree)
    tiers = {g: Tier(g, GROUP_NAMES[g], classes=dict.fromkeys(labels, 0)) for g in GROUP_ORDER}
    for code in units_asked(engine, root_id, list(results)):
        r = results.get(code)
        tier = tiers[r.group if r else group_of(plan.registry.get(code))]
        tier.asked += 1
        if r is not None:
            tier.due.add(r.due_at.astimezone(tz).date())
        if r is not None and r.submitted_at is not None and r.submitted_at <= as_of:
            tier.received.append(r.submitted_at.astimezone(tz).date())
            tier.classes[r.classification] = tier.classes.get(r.classification, 0) + 1
        elif r is not None and r.status == "missing" and closed.get(code, as_of) <= as_of:
            tier.classes[form.not_classifiable] += 1
        else:
            tier.classes[NOT_REPORTED] += 1
    return [t for t in tiers.values() if t.asked]


def closed_at(conn, tree: list[int]) -> dict[str, dt.datetime]:
    """When the task of each unit that never reported closed (its token completed)."""
    return dict(conn.execute(
        select(s.work_items.c.unit_code, s.tokens.c.completed_at)
        .join(s.tokens, s.tokens.c.id == s.work_items.c.token_id)
        .where(s.work_items.c.instance_id.in_(tree), s.work_items.c.status == "missing",
               s.tokens.c.completed_at.is_not(None))).all())


def _day_range(tiers: list[Tier]) -> tuple[dt.date, dt.date]:
    """From a few days before the first report or due day to a few days after the last."""
    days = [d for t in tiers for d in [*t.received, *t.due]]
    return min(days) - dt.timedelta(days=5), max(days) + dt.timedelta(days=3)


def _cumulative(days: list[dt.date], start: dt.date, end: dt.date) -> tuple[list[dt.date], list[int]]:
    """(each day from ``start`` to ``end``, the reports received up to and including it)."""
    per_day: dict[dt.date, int] = {}
    for d in days:
        per_day[d] = per_day.get(d, 0) + 1
    xs, ys, total = [], [], sum(n for d, n in per_day.items() if d < start)
    day = start
    while day <= end:
        total += per_day.get(day, 0)
        xs.append(day)
        ys.append(total)
        day += dt.timedelta(days=1)
    return [*xs, day], [*ys, total]  # the last day drawn a day wide


_ASKED = {"stroke": _GREY, "stroke_width": 1, "stroke_dasharray": "5,3"}
_DUE_LINE = {"stroke": _DUE, "stroke_width": 1.5, "stroke_dasharray": "1.5,3"}


def _steps(p: draw.Panel, xs: list[dt.date], ys: list[int]) -> str:
    """The path of a running count drawn in steps: each day's count held until the next day
    (cut at the panel's right edge)."""
    days = [min(x.toordinal(), p.x_range[1]) for x in xs]
    path = [f"M{draw.num(p.px(days[0]))},{draw.num(p.py(ys[0]))}"]
    for x, before, y in zip(days[1:], ys, ys[1:]):
        path += [f"L{draw.num(p.px(x))},{draw.num(p.py(before))}", f"L{draw.num(p.px(x))},{draw.num(p.py(y))}"]
    return " ".join(path)


def received_svg(tiers: list[Tier], as_of: dt.date) -> str:
    """Reports received per tier, day by day, against the number asked and the due date."""
    start, end = _day_range(tiers)
    svg = draw.page(f"{RECEIVED_TITLE} (đến {as_of:%d/%m/%Y})")
    ticks = draw.day_ticks(start, end)
    for (x, y, w, h), tier in zip(draw.panels(len(tiers), 66, 14, 54, 64, 50), tiers):
        p = draw.Panel(x, y, w, h, (start.toordinal(), end.toordinal()), (0, tier.asked * 1.12))
        draw.x_axis(svg, p, [(d.toordinal(), f"{d:%d/%m}") for d in ticks])
        draw.y_axis(svg, p, [(v, str(v)) for v in draw.value_ticks(tier.asked * 1.12)])
        draw.el(svg, "line", x1=p.x, y1=p.py(tier.asked), x2=p.x + p.w, y2=p.py(tier.asked), **_ASKED)
        for due in sorted(tier.due):
            if start <= due <= end:
                draw.el(svg, "line", x1=p.px(due.toordinal()), y1=p.y, x2=p.px(due.toordinal()), y2=p.y + p.h, **_DUE_LINE)
        xs, ys = _cumulative(tier.received, start, min(end, max(as_of, start)))
        draw.el(svg, "path", d=_steps(p, xs, ys), fill="none", stroke=_TIER_COLORS[tier.key], stroke_width=2,
                stroke_linejoin="miter")
        dues = ", ".join(f"{d:%d/%m}" for d in sorted(tier.due)) or "—"
        draw.frame(svg, p, f"{tier.name}: {len(tier.received)}/{tier.asked} (hạn {dues})")
    draw.vertical_text(svg, "Số đơn vị", 16, 54 + (draw.HEIGHT - 54 - 64) / 2)
    draw.legend(svg, [({"stroke": _GREY, "stroke_width": 2}, "Số đơn vị đã báo cáo (cộng dồn)"),
                      (_ASKED, "Số đơn vị phải báo cáo"), (_DUE_LINE, "Hạn báo cáo")], draw.HEIGHT - 16)
    return draw.document(svg)


def _class_colors(labels: list[str]) -> list[str]:
    """Best band first, green to red; then "không đủ điều kiện" dark grey, "chưa báo cáo" light."""
    return [*draw.band_colors(len(labels) - 2), _GREY, _LIGHT]


def classes_svg(tiers: list[Tier], as_of: dt.date) -> str:
    """Units per class in each tier: one panel of horizontal bars per tier, counts written."""
    labels = list(tiers[0].classes)
    colors = _class_colors(labels)
    names = [textwrap.fill(label, 16) for label in labels]
    left = 14 + max(draw.text_width(line, draw.TICK) for name in names for line in name.split("\n"))
    svg = draw.page(f"{CLASSES_TITLE} (đến {as_of:%d/%m/%Y})")
    rows = list(range(len(labels)))[::-1]  # the best band on top
    for i, ((x, y, w, h), tier) in enumerate(zip(draw.panels(len(tiers), left, 14, 54, 36, 14), tiers)):
        counts = [tier.classes[label] for label in labels]
        top = max(max(counts), 1) * 1.2
        p = draw.Panel(x, y, w, h, (0, top), (-0.6, len(labels) - 0.4))
        draw.x_axis(svg, p, [(v, str(v)) for v in draw.value_ticks(top, 6)])
        draw.y_axis(svg, p, [(row, name if i == 0 else "") for row, name in zip(rows, names)], grid=False)
        for row, n, color in zip(rows, counts, colors):
            draw.el(svg, "rect", x=p.px(0), y=p.py(row + 0.4), width=max(p.px(n) - p.px(0), 0),
                    height=p.py(row - 0.4) - p.py(row + 0.4), fill=color, stroke=draw.FRAME, stroke_width=0.5)
            draw.el(svg, "text", str(n), x=p.px(n + top / 1.2 * 0.02), y=p.py(row) + draw.TICK * 0.35,
                    font_size=draw.TICK, fill=draw.INK)
        draw.frame(svg, p, f"{tier.name} ({tier.asked} đơn vị)")
    return draw.document(svg)


def chart_svgs(engine, root_id: int, as_of: dt.datetime) -> dict[str, str]:
    """The two charts at ``as_of`` as SVG documents, by title; empty while no unit has
    reported yet (nothing to draw)."""
    tiers = tiers_at(engine, root_id, as_of)
    if not any(t.received for t in tiers):
        return {}
    day = as_of.astimezone(engine.plan.calendar.tz).date()
    return {RECEIVED_TITLE: received_svg(tiers, day), CLASSES_TITLE: classes_svg(tiers, day)}


def chart_pngs(engine, root_id: int, as_of: dt.datetime) -> dict[str, bytes]:
    """The two charts as PNG, 1000 px wide, by file name (``FILES``); empty while nothing to draw."""
    from planflow.bpmn.diagram import svg_to_png

    names = {RECEIVED_TITLE: FILES["received"], CLASSES_TITLE: FILES["classes"]}
    return {names[title]: svg_to_png(svg, width=draw.WIDTH) for title, svg in chart_svgs(engine, root_id, as_of).items()}


def charts_markdown(engine, root_id: int, as_of: dt.datetime) -> str | None:
    """Both charts embedded in Markdown (``data:image/svg+xml;base64``), or None when there is
    nothing to draw yet."""
    svgs = chart_svgs(engine, root_id, as_of)
    if not svgs:
        return None
    return "\n".join(f"### {title}\n\n![{title}]({data_uri(svg)})\n" for title, svg in svgs.items())


def write_pngs(engine, root_id: int, as_of: dt.datetime, folder: Path) -> list[Path]:
    """The charts written into ``folder`` (beside the report documents); [] when nothing to draw."""
    pngs = chart_pngs(engine, root_id, as_of)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, data in pngs.items():
        (folder / name).write_bytes(data)
        out.append(folder / name)
    return out
