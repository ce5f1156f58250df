"""The plan's diagram with where it stands drawn on it, as a Prefect artifact
(``<plan id>-<year>-diagram``), published with the other progress artifacts by
``flows/artifacts.py`` whenever a flow moves the instance. What it shows is drawn by the
engine (``planflow.bpmn.state_markdown``: why a Markdown artifact with the SVG as a ``data:``
image); this module publishes it."""

from __future__ import annotations

import datetime as dt

from prefect.artifacts import acreate_markdown_artifact

from planflow.bpmn.state_markdown import state_markdown
from planflow.notifications.vn_format import short_datetime

WHAT = "diagram"  # the artifact key's last part: ``artifact_key(instance key, WHAT)``


async def publish_diagram(engine, root: int, key: str, artifact: str, as_of: dt.datetime, progress=None) -> str:
    """Publish instance ``root``'s diagram as it stands at ``as_of`` under the artifact key
    ``artifact`` (``key``: the instance key ``<plan id>/<year>``, named in its description);
    return the artifact's id. ``progress``: the progress the other artifacts were made from."""
    when = short_datetime(as_of, engine.plan.calendar.tz)
    return str(await acreate_markdown_artifact(
        key=artifact, markdown=state_markdown(engine, root, as_of, progress),
        description=f"Sơ đồ quy trình và tình hình — lúc {when} ({key})"))
