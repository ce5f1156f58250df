"""A picture of progress (issue 10): two charts drawn from the store, as PNG images.

* reports received over time: per tier (sở/ban/ngành, UBND cấp huyện, UBND cấp xã) the
  number of units that sent their self-evaluation, day by day (Vietnam time), against the
  number asked (a horizontal line) and the tier's due date(s) (vertical lines);
* classifications: per tier, how many units are in each of the plan's bands (read from
  its criteria form), "không đủ điều kiện xếp loại" and "chưa báo cáo".

``charts_markdown`` embeds both in Markdown (``data:`` URIs) for a Prefect artifact;
``chart_pngs`` / ``write_pngs`` give the images themselves (next to the report documents).
Rendered with matplotlib's Agg canvas, no pyplot (no global state, safe in threads);
DejaVu Sans, which ships with matplotlib, has every Vietnamese diacritic.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib import colormaps
from matplotlib import dates as mdates
from matplotlib.colors import to_hex
from matplotlib.ticker import MaxNLocator
from sqlalchemy import select
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from planflow import store as s
from planflow.aggregation import GROUP_NAMES, GROUP_ORDER, group_of, unit_results
from planflow.progress import units_asked

NOT_REPORTED = "Chưa báo cáo"
RECEIVED_TITLE = "Báo cáo tự đánh giá nhận được theo ngày"
CLASSES_TITLE = "Kết quả xếp loại theo cấp"
FILES = {"received": "bieu-do-bao-cao-nhan-duoc.png", "classes": "bieu-do-xep-loai.png"}
_WIDTH_IN, _HEIGHT_IN, _DPI = 10.0, 3.4, 100  # 1000 x 340 px: the width of the Prefect UI
_TIER_COLORS = {"department": "#1f77b4", "district": "#ff7f0e", "commune": "#2ca02c"}
_GREY, _LIGHT, _DUE = "#636363", "#d9d9d9", "#d62728"
_RED_TO_GREEN = colormaps["RdYlGn"]


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


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png", dpi=_DPI, metadata={"Software": None}, pil_kwargs={"optimize": True})
    return out.getvalue()


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


def received_png(tiers: list[Tier], as_of: dt.date) -> bytes:
    """Reports received per tier, day by day, against the number asked and the due date."""
    start, end = _day_range(tiers)
    fig = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN), layout="constrained")
    axes = fig.subplots(1, len(tiers), sharex=True, squeeze=False)[0]
    for ax, tier in zip(axes, tiers):
        xs, ys = _cumulative(tier.received, start, min(end, max(as_of, start)))
        ax.step(xs, ys, where="post", color=_TIER_COLORS[tier.key], linewidth=2)
        ax.axhline(tier.asked, color=_GREY, linestyle="--", linewidth=1)
        for due in sorted(tier.due):
            ax.axvline(due, color=_DUE, linestyle=":", linewidth=1.5)
        dues = ", ".join(f"{d:%d/%m}" for d in sorted(tier.due)) or "—"
        ax.set_title(f"{tier.name}: {len(tier.received)}/{tier.asked} (hạn {dues})", fontsize=10)
        ax.set_ylim(0, tier.asked * 1.12)
        ax.set_xlim(start, end)
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=5))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d/%m"))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Số đơn vị", fontsize=9)
    fig.legend(handles=[Line2D([], [], color=_GREY, linewidth=2, label="Số đơn vị đã báo cáo (cộng dồn)"),
                        Line2D([], [], color=_GREY, linestyle="--", label="Số đơn vị phải báo cáo"),
                        Line2D([], [], color=_DUE, linestyle=":", linewidth=1.5, label="Hạn báo cáo")],
               loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    fig.suptitle(f"{RECEIVED_TITLE} (đến {as_of:%d/%m/%Y})", fontsize=11)
    return _png(fig)


def _class_colors(labels: list[str]) -> list[str]:
    """Best band first, green to red; then "không đủ điều kiện" dark grey, "chưa báo cáo" light."""
    bands = labels[:-2]
    step = 0.8 / max(len(bands) - 1, 1)
    return [to_hex(_RED_TO_GREEN(0.9 - i * step)) for i in range(len(bands))] + [_GREY, _LIGHT]


def classes_png(tiers: list[Tier], as_of: dt.date) -> bytes:
    """Units per class in each tier: one panel of horizontal bars per tier, counts written."""
    labels = list(tiers[0].classes)
    colors = _class_colors(labels)
    fig = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN), layout="constrained")
    axes = fig.subplots(1, len(tiers), sharey=True, squeeze=False)[0]
    rows = list(range(len(labels)))[::-1]  # the best band on top
    for ax, tier in zip(axes, tiers):
        counts = [tier.classes[label] for label in labels]
        ax.barh(rows, counts, color=colors, edgecolor="#444444", linewidth=0.5)
        for y, n in zip(rows, counts):
            ax.text(n + max(max(counts), 1) * 0.02, y, str(n), va="center", fontsize=9)
        ax.set_xlim(0, max(max(counts), 1) * 1.2)
        ax.set_title(f"{tier.name} ({tier.asked} đơn vị)", fontsize=10)
        ax.tick_params(labelsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(rows, [textwrap.fill(label, 16) for label in labels])
    fig.suptitle(f"{CLASSES_TITLE} (đến {as_of:%d/%m/%Y})", fontsize=11)
    return _png(fig)


def chart_pngs(engine, root_id: int, as_of: dt.datetime) -> dict[str, bytes]:
    """The two charts at ``as_of`` as PNG bytes, by file name (``FILES``); empty while no
    unit has reported yet (nothing to draw)."""
    tiers = tiers_at(engine, root_id, as_of)
    if not any(t.received for t in tiers):
        return {}
    day = as_of.astimezone(engine.plan.calendar.tz).date()
    return {FILES["received"]: received_png(tiers, day), FILES["classes"]: classes_png(tiers, day)}


def charts_markdown(engine, root_id: int, as_of: dt.datetime) -> str | None:
    """Both charts embedded in Markdown (``data:image/png;base64``), or None when there is
    nothing to draw yet."""
    pngs = chart_pngs(engine, root_id, as_of)
    if not pngs:
        return None
    titles = {FILES["received"]: RECEIVED_TITLE, FILES["classes"]: CLASSES_TITLE}
    parts = [f"### {titles[name]}\n\n![{titles[name]}](data:image/png;base64,{base64.b64encode(data).decode()})\n"
             for name, data in pngs.items()]
    return "\n".join(parts)


def write_pngs(engine, root_id: int, as_of: dt.datetime, folder: Path) -> list[Path]:
    """The charts written into ``folder`` (beside the report documents); [] when nothing to draw."""
    pngs = chart_pngs(engine, root_id, as_of)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, data in pngs.items():
        (folder / name).write_bytes(data)
        out.append(folder / name)
    return out
