"""Artifacts of a plan instance, refreshed whenever a flow moves it: what operators watch.

Keys are derived from the instance key (lower-case letters, digits and dashes), so each
artifact is one evolving object in the Prefect UI: progress, units, districts,
escalations, stalled steps, and the aggregate report. What they show is read by the
engine (``planflow.progress``); this module publishes it.
"""

from __future__ import annotations

import datetime as dt
import re

from prefect.artifacts import acreate_markdown_artifact, acreate_progress_artifact, acreate_table_artifact

from planflow.documents import documents_dir, latest
from planflow.progress import instance_progress
from planflow.flows.runtime import RunRef, engine_for, root_id


def artifact_key(root_key: str, what: str) -> str:
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


async def publish_artifacts(ref: RunRef, as_of: dt.datetime) -> dict:
    """Publish the instance's artifacts as they stand at ``as_of``; return its summary."""
    root = root_id(ref)
    if root is None:
        return {}
    view = instance_progress(engine_for(ref), root, as_of)
    key = ref.root_key
    await acreate_progress_artifact(
        progress=view.percent, key=artifact_key(key, "progress"),
        description=f"Đơn vị đã báo cáo: {view.reported}/{view.expected} ({key})")
    tables = [("units", view.units, f"Tình trạng báo cáo của từng đơn vị ({key})"),
              ("districts", view.districts, f"Tiến độ theo huyện ({key})"),
              ("escalations", view.escalations, f"Đơn vị quá hạn và cấp đôn đốc ({key})"),
              ("stalled", view.stalled, f"Bước bị đình trệ ({key})")]
    for what, table, description in tables:
        await acreate_table_artifact(key=artifact_key(key, what), table=table, description=description)
    if view.report:
        await acreate_markdown_artifact(key=artifact_key(key, "report"),
                                        markdown=view.report + documents_note(ref, root),
                                        description=f"Báo cáo tổng hợp ({key})")
    return view.summary
