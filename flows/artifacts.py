"""Artifacts of a plan instance, refreshed whenever a flow moves it: what operators watch.

Keys are derived from the instance key ``<plan id>/<year>`` (lower-case letters, digits and
dashes: ``hai-duong-dan-van-2022-2022-progress``), so two plans on one server, and two years
of one plan, never overwrite each other's, and each artifact is one evolving object in the
Prefect UI: progress (overall and per tier),
units, districts, overdue units, stalled steps with their actions, operator actions, the
charts and the aggregate report. Last comes the ``overview``: the plan's state at a glance,
linking each artifact's page as just published (``/artifacts/artifact/<id>``: one click to
the table, not the key's history list). Every artifact is created in the run that publishes
it, so the run's Artifacts tab lists them all. What they show is read by the engine
(``planflow.progress``); this module publishes it.
"""

from __future__ import annotations

import datetime as dt
import re

from prefect.artifacts import acreate_markdown_artifact, acreate_progress_artifact, acreate_table_artifact

from planflow.documents import documents_dir, latest
from planflow.notifications.vn_format import short_datetime
from planflow.progress import instance_progress
from planflow.flows.diagram_artifact import WHAT as DIAGRAM
from planflow.flows.diagram_artifact import publish_diagram
from planflow.flows.runtime import RunRef, engine_for, root_id

TIER_KEYS = {"department": "progress-departments", "district": "progress-districts", "commune": "progress-communes"}


def artifact_key(root_key: str, what: str) -> str:
    """``<plan id>-<year>-<what>`` of an instance key ``<plan id>/<year>``, as Prefect takes a key."""
    return f"{re.sub(r'[^a-z0-9]+', '-', root_key.lower()).strip('-')}-{what}"


def documents_note(ref: RunRef, root: int) -> str:
    """Where the report's documents are (the worker's folder), to end the report artifact with."""
    docs = latest(engine_for(ref), root, documents_dir(ref.outbox_dir))
    if docs is None:
        return "\n\n---\n*Văn bản báo cáo (DOCX, PDF, XLSX) chưa được ghi.*\n"
    files = ", ".join(f"`{p.name}`" for p in docs.files)
    missing = "" if docs.note == "" else " Chưa có bản PDF (cần LibreOffice trên máy chạy planflow): dùng bản DOCX."
    return (f"\n\n---\n**Văn bản báo cáo lần {docs.round}:** {files} — trong thư mục "
            f"`{docs.folder}` của máy chạy planflow.{missing}\n")


def charts_of(ref: RunRef, root: int, as_of: dt.datetime) -> str | None:
    """The charts of progress and classifications (``planflow.charts``), None while that
    module is not there or has nothing to draw."""
    try:
        from planflow.charts import charts_markdown
    except ImportError:
        return None
    return charts_markdown(engine_for(ref), root, as_of)


def overview_markdown(view, key: str, links: dict[str, tuple[str, str]], tz) -> str:
    """The plan's state at a glance, each line linking its artifact's page. ``links``:
    what -> (title, artifact id), in the order shown."""
    lines = [f"# {key}: tình hình lúc {short_datetime(view.as_of, tz)}", "",
             f"**{view.overall.description}**", ""]
    lines += [f"- {tier.description}" for tier in view.tiers.values()]
    lines += ["", f"- Đơn vị quá hạn chưa báo cáo: **{view.overdue_count}**",
              f"- Việc cần xử lý (bước lỗi, thư không gửi được, sự cố): **{view.stalled_count}**", "",
              "## Xem chi tiết (một lần bấm)", ""]
    lines += [f"- [{title}](/artifacts/artifact/{aid})" for title, aid in links.values()]
    return "\n".join(lines) + "\n"


async def _progress(view, key: str) -> dict[str, tuple[str, str]]:
    links = {"progress": ("Tiến độ chung", str(await acreate_progress_artifact(
        progress=view.percent, key=artifact_key(key, "progress"), description=f"{view.overall.description} ({key})")))}
    for group, tier in view.tiers.items():
        links[TIER_KEYS[group]] = (f"Tiến độ {tier.name}", str(await acreate_progress_artifact(
            progress=tier.percent, key=artifact_key(key, TIER_KEYS[group]), description=tier.description)))
    return links


async def publish_artifacts(ref: RunRef, as_of: dt.datetime) -> dict:
    """Publish the instance's artifacts as they stand at ``as_of``; return its summary."""
    root = root_id(ref)
    if root is None:
        return {}
    engine = engine_for(ref)
    tz = engine.plan.calendar.tz
    view = instance_progress(engine, root, as_of)
    key = ref.root_key
    links = await _progress(view, key)
    when = short_datetime(as_of, tz)
    tables = [("units", view.units, "Từng đơn vị"),
              ("overdue", view.overdue, f"Đơn vị quá hạn ({view.overdue_count})"),
              *([("districts", view.districts, "Tiến độ theo huyện")] if view.districts else []),  # none: two tiers
              ("stalled", view.stalled, f"Việc cần xử lý ({view.stalled_count})"),
              ("actions", view.actions, "Nhật ký thao tác")]
    for what, table, title in tables:
        links[what] = (title, str(await acreate_table_artifact(
            key=artifact_key(key, what), table=table, description=f"{title} — lúc {when} ({key})")))
    charts = charts_of(ref, root, as_of)
    if charts:
        links["charts"] = ("Biểu đồ", str(await acreate_markdown_artifact(
            key=artifact_key(key, "charts"), markdown=charts, description=f"Biểu đồ tiến độ — lúc {when} ({key})")))
    links[DIAGRAM] = ("Sơ đồ quy trình và tình hình",
                      await publish_diagram(engine, root, key, artifact_key(key, DIAGRAM), as_of, view))
    if view.report:
        links["report"] = ("Báo cáo tổng hợp", str(await acreate_markdown_artifact(
            key=artifact_key(key, "report"), markdown=view.report + documents_note(ref, root),
            description=f"Báo cáo tổng hợp ({key})")))
    await acreate_markdown_artifact(key=artifact_key(key, "overview"), markdown=overview_markdown(view, key, links, tz),
                                    description=f"Tình hình Kế hoạch lúc {when} ({key})")
    return view.summary
