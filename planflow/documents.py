"""Sở Nội vụ's report as documents an official signs and files: ``report.docx`` (Nghị định
30/2020 layout, ``planflow.report_docx``), ``report.pdf`` made from it by LibreOffice when
it is installed (``planflow.pdf``), and ``annex.xlsx`` (``planflow.annex_xlsx``).

All three are built from a stored report (a row of ``reports``: its data, when and by which
step it was made), so they can be built again at any time and say the same thing:

* the aggregation step writes them for every run, under the documents folder
  (``PLANFLOW_DOCUMENTS_DIR``, else ``documents/`` beside the outbox folder), in
  ``<instance>/round-<n>/`` — a report sent back and made again is a new round;
* ``simulate`` copies the latest round's into its ``--out``;
* the report-upward letter carries the PDF (the DOCX when there is no PDF) and the XLSX,
  built when the letter is delivered from the report it names (its outbox row holds the
  report's id only, or, in rows queued before it did, the instance's latest report made at
  or before the letter was queued).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from planflow import annex_xlsx, pdf, report_docx
from planflow import store as s
from planflow.report import latest_report

ATTACHED_KINDS = ("report-upward",)  # the letters that carry the report's documents
DOCX, PDF, XLSX = "report.docx", "report.pdf", "annex.xlsx"
MIME = {DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        PDF: "application/pdf", XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


@dataclass(frozen=True)
class Documents:
    """The documents of one report: where they are, which there are, and why one is missing."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    note: str = ""
    round: int = 0


def documents_dir(outbox_dir: str | os.PathLike | None) -> Path:
    """Where the aggregation step writes documents: ``PLANFLOW_DOCUMENTS_DIR``, else
    ``documents/`` beside the outbox folder."""
    named = os.environ.get("PLANFLOW_DOCUMENTS_DIR")
    if named:
        return Path(named)
    return Path(outbox_dir or "out/outbox").resolve().parent / "documents"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "plan"


def build(plan, conn, report) -> tuple[dict[str, bytes], str]:
    """The files of a stored report (name -> bytes) and a note when the PDF could not be made."""
    inst = conn.execute(select(s.instances.c.scope_unit).where(s.instances.c.id == report.instance_id)).first()
    scope = inst.scope_unit if inst is not None else None
    docx = report_docx.render(plan, report.data, report.element_id, report.created_at, scope)
    scores = annex_xlsx.criterion_scores(conn, plan, s.tree_ids(conn, report.instance_id))
    files = {DOCX: docx, XLSX: annex_xlsx.render(plan, report.data, scores, report.created_at)}
    converted = pdf.convert(docx)
    if converted.pdf is not None:
        files[PDF] = converted.pdf
    return files, converted.note


def _write(folder: Path, files: dict[str, bytes]) -> list[Path]:
    """Each file written whole (a temporary file renamed), so a reader never sees half of one."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, data in files.items():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, folder / name)
        out.append(folder / name)
    return out


def _folder(conn, root_id: int, directory: Path, round_: int) -> Path:
    key = conn.scalar(select(s.instances.c.key).where(s.instances.c.id == root_id))
    return Path(directory) / slug(key) / f"round-{round_}"


def _latest_round(conn, root_id: int | None, directory) -> tuple[object, Path] | None:
    """The instance's latest report and the folder of its round, or None before it has any."""
    if root_id is None:
        return None
    report = latest_report(conn, root_id)
    if report is None:
        return None
    return report, _folder(conn, root_id, Path(directory), report.data["round"])


def _complete(folder: Path) -> bool:
    """Are a round's documents written (its DOCX and XLSX; the PDF only where LibreOffice is)?"""
    return (folder / DOCX).is_file() and (folder / XLSX).is_file()


def _found(folder: Path, round_: int) -> Documents | None:
    """The documents already in a round's folder."""
    files = [folder / n for n in (DOCX, PDF, XLSX) if (folder / n).is_file()]
    note = "" if (folder / PDF).is_file() else "no report.pdf: LibreOffice (soffice) was not there to make it"
    return Documents(folder, files, note, round_) if files else None


def latest(engine, root_id: int | None, directory: str | os.PathLike) -> Documents | None:
    """The documents written for the instance's latest report, or None before it has any."""
    with engine.db.connect() as conn:
        found = _latest_round(conn, root_id, directory)
    if found is None:
        return None
    report, folder = found
    return _found(folder, report.data["round"])


def write_latest(engine, root_id: int | None, directory: str | os.PathLike) -> Documents | None:
    """Write the documents of the instance's latest report, once per round (a round whose
    DOCX and XLSX are there already is left as it is); None before the first report."""
    with engine.db.connect() as conn:
        found = _latest_round(conn, root_id, directory)
        if found is None:
            return None
        report, folder = found
        if _complete(folder):
            return _found(folder, report.data["round"])
        files, note = build(engine.plan, conn, report)
    ordered = {n: files[n] for n in (DOCX, PDF, XLSX) if n in files}
    return Documents(folder, _write(folder, ordered), note, report.data["round"])


def export(documents: Documents, out_dir: str | os.PathLike) -> list[Path]:
    """Copy a round's documents into ``out_dir`` (``simulate``'s ``--out``) under their own names;
    a PDF left from an earlier run that this round does not have is removed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in documents.files}
    for name in (DOCX, PDF, XLSX):
        if name not in names:
            (out / name).unlink(missing_ok=True)
    return [Path(shutil.copyfile(p, out / p.name)) for p in documents.files]


def report_of_letter(conn, row):
    """The report a letter carries: the one its row names (``report_id``), else the
    instance's latest made at or before the letter was queued."""
    report_id = (row.context or {}).get("report_id")
    if report_id is not None:
        return conn.execute(select(s.reports).where(s.reports.c.id == report_id)).first()
    root = s.root_of(conn, row.instance_id)
    return conn.execute(select(s.reports).where(s.reports.c.instance_id == root,
                                                s.reports.c.created_at <= row.created_at)
                        .order_by(s.reports.c.id.desc()).limit(1)).first()


def _written(conn, report, directory) -> dict[str, bytes] | None:
    """The files of ``report`` as ``write_latest`` wrote them (its instance's latest report, its
    round's DOCX and XLSX there), or None when they are not in ``directory``."""
    if directory is None:
        return None
    found = _latest_round(conn, report.instance_id, directory)
    if found is None or found[0].id != report.id:
        return None
    report, folder = found
    if not _complete(folder):
        return None
    return {p.name: p.read_bytes() for p in _found(folder, report.data["round"]).files}


def attachments_for(plan, db, row, cache: dict | None = None,
                    directory: str | os.PathLike | None = None) -> list[tuple[str, bytes, str]]:
    """The files a letter carries, as (file name, bytes, MIME type): for a report-upward
    letter the report's PDF (or DOCX) and its XLSX; nothing for other letters. The files the
    documents folder ``directory`` holds for that report are sent as they are (the documents
    the operator sees, not made again: LibreOffice's PDF costs seconds); else they are built
    from the stored report. ``cache`` (report id -> files) lets one delivery run do it once."""
    if row.kind not in ATTACHED_KINDS:
        return []
    cache = {} if cache is None else cache
    with db.connect() as conn:
        report = report_of_letter(conn, row)
        if report is None:
            raise LookupError(f"letter {row.key}: no aggregate report to attach")
        if report.id not in cache:
            cache[report.id] = _written(conn, report, directory) or build(plan, conn, report)[0]
    files = cache[report.id]
    stem = f"{slug(plan.id)}-lan-{report.data['round']}"
    chosen = [PDF if PDF in files else DOCX, XLSX]
    names = {DOCX: f"bao-cao-{stem}.docx", PDF: f"bao-cao-{stem}.pdf", XLSX: f"phu-luc-{stem}.xlsx"}
    return [(names[n], files[n], MIME[n]) for n in chosen]
