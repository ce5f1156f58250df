"""The words for a unit's task status: one place for every reader.

``QD42``: the statuses of QĐ 42/2014/QĐ-TTg (amended by QĐ 23/2018/QĐ-TTg), as in
``summary.json`` and the units table. ``REPORT``: the short column words of the aggregate
report and of ``planflow simulate``'s table (a unit's reporting status when the report was
made). ``NOT_OPEN``: the units table's word for a unit whose task has not opened yet.
``MOMENT``: the words operators read in the artifacts' "Tình trạng" columns, fitting the
moment they are read: before its due date a unit that has not reported is "đang thực
hiện" (QĐ 42's "chưa hoàn thành trong hạn" stays in the units table's own QĐ 42 column).
"""

from __future__ import annotations

import datetime as dt

QD42 = {
    "on_time": "hoàn thành đúng hạn",
    "late": "hoàn thành quá hạn",
    "open_in_time": "chưa hoàn thành trong hạn",
    "overdue": "chưa hoàn thành quá hạn",
}

REPORT = {"on_time": "Đúng hạn", "late": "Quá hạn", "missing": "Không báo cáo", "open": "Đang thực hiện"}

# a district's own self-evaluation opens once its communes are aggregated: until then
NOT_OPEN = "chưa đến bước báo cáo"

MOMENT = {
    "on_time": "đã báo cáo đúng hạn",
    "late": "đã báo cáo quá hạn",
    "open": "đang thực hiện",
    "overdue": "quá hạn, chưa báo cáo",
    "missing": "không báo cáo (đã đóng)",
    "not_open": NOT_OPEN,
}


def qd42_status(status: str, late: bool | None, due_at: dt.datetime, as_of: dt.datetime) -> str:
    """Status of a unit's task in the words of QĐ 42/2014/QĐ-TTg (amended by QĐ 23/2018)."""
    if status == "submitted":
        return QD42["late" if late else "on_time"]
    return QD42["open_in_time" if as_of <= due_at else "overdue"]


def report_status(status: str) -> str:
    """The report's word for a unit's reporting status (the code itself when unknown)."""
    return REPORT.get(status, status)


def moment_status(status: str | None, due_at: dt.datetime | str | None, as_of: dt.datetime) -> str:
    """The operator's word for a unit's reporting status at ``as_of``: ``status`` is the
    summary's ("on_time", "late", "open", "missing"; None while its task has not opened),
    ``due_at`` its due date (an ISO 8601 string as in the summary, or a datetime)."""
    if status is None:
        return MOMENT["not_open"]
    if status == "open" and due_at is not None:
        due = dt.datetime.fromisoformat(due_at) if isinstance(due_at, str) else due_at
        return MOMENT["open" if as_of <= due else "overdue"]
    return MOMENT.get(status, status)
