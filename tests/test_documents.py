"""Sở Nội vụ's report as documents (issue 12): report.docx in the layout of Nghị định
30/2020/NĐ-CP, report.pdf from it, annex.xlsx; and the report-upward letter carrying them.

The documents are built from an engine-only run of the shipped plan and scenario (as
tests/test_counts.py runs it), so no Prefect server is needed. The PDF part needs LibreOffice
(``soffice``) and poppler (``pdftoppm``): skipped without them unless
PLANFLOW_REQUIRE_BROWSER=1 (CI), where it fails. Its first page is kept as
test-output/documents/report-page1.png: look at it.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import email
import email.policy
import io
import json
import os
import shutil
import subprocess
from types import SimpleNamespace

import pytest
from docx import Document
from docx.shared import Mm
from openpyxl import load_workbook
from sqlalchemy import select

from planflow import Engine, load_scenario, store
from planflow.notifications import vn_date
from planflow.documents import documents_dir, export, latest, write_latest
from planflow.progress import units_asked
from planflow.report import latest_report
from planflow.report_docx import template_path
from planflow.simulation import first_start, run_year
from tests.conftest import REPO, SCENARIO
from planflow.simulation import EngineActions

KEY = "hai-duong-dan-van-2022/2022/documents"
SHOTS = REPO / "test-output" / "documents"
TIERS = {"department": "Sở, ban, ngành", "district": "UBND cấp huyện", "commune": "UBND cấp xã"}


def _need_pdf_tools() -> None:
    missing = [p for p in ("soffice", "pdftoppm", "pdftotext") if shutil.which(p) is None]
    if missing:
        if os.environ.get("PLANFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the PDF of the report is required (CI) but {', '.join(missing)} is not installed")
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install libreoffice-writer-nogui poppler-utils)")


@pytest.fixture(scope="module")
def year(plan, tmp_path_factory):
    """The shipped plan year, run on the engine alone; its documents written once."""
    folder = tmp_path_factory.mktemp("documents")
    engine = Engine(plan, store.connect(f"sqlite:///{folder / 'planflow.db'}"))
    clock = first_start(plan)
    root = engine.start(KEY, clock)
    asyncio.run(run_year(engine, load_scenario(SCENARIO, plan), root, clock, EngineActions(engine, root)))
    with engine.db.connect() as conn:
        report = latest_report(conn, root)
    docs = write_latest(engine, root, folder / "documents")
    return SimpleNamespace(engine=engine, root=root, report=report, data=report.data, docs=docs, folder=folder)


def _asked_by_tier(year) -> dict[str, list[str]]:
    """The names of the units the plan asked, per tier."""
    out = collections.defaultdict(list)
    for code in units_asked(year.engine, year.root):
        unit = year.engine.plan.registry.get(code)
        groups = set(unit.groups)
        tier = "commune" if "communes" in groups else "district" if "districts" in groups else "department"
        out[tier].append(unit.name)
    return out


def _text(doc) -> str:
    parts = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        for row in table.rows:
            parts += [c.text for c in row.cells]
    return "\n".join(parts)


def test_the_documents_of_a_report_are_written_once_per_round(year):
    assert year.docs is not None and year.docs.round == year.data["round"] == 2
    names = {p.name for p in year.docs.files}
    assert {"report.docx", "annex.xlsx"} <= names
    assert year.docs.folder == year.folder / "documents" / "hai-duong-dan-van-2022-2022-documents" / "round-2"
    again = write_latest(year.engine, year.root, year.folder / "documents")  # written already: left as is
    assert again.files == year.docs.files
    assert latest(year.engine, year.root, year.folder / "documents").files == year.docs.files


def test_report_docx_has_the_layout_of_nghi_dinh_30(year):
    doc = Document(str(year.docs.folder / "report.docx"))
    section = doc.sections[0]
    assert abs(section.page_width - Mm(210)) < Mm(1) and abs(section.page_height - Mm(297)) < Mm(1)  # A4
    twip = Mm(0.02)  # Word keeps margins in twentieths of a point: 15 mm is 850 twips, 14.99 mm
    assert Mm(20) - twip <= section.top_margin <= Mm(25) and Mm(20) - twip <= section.bottom_margin <= Mm(25)
    assert Mm(30) - twip <= section.left_margin <= Mm(35) and Mm(15) - twip <= section.right_margin <= Mm(20)
    normal = doc.styles["Normal"].font
    assert normal.name == "Times New Roman" and 13 <= normal.size.pt <= 14
    text = _text(doc)
    day = year.report.created_at.astimezone(year.engine.plan.calendar.tz)
    dated = f"Hải Dương, {vn_date(day)}"
    for words in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc", "UBND TỈNH HẢI DƯƠNG",
                  "SỞ NỘI VỤ", "Số:", "/BC-SNV", dated, "BÁO CÁO",
                  "Kết quả triển khai thực hiện công tác dân vận", "Nơi nhận:", "Bộ Nội vụ;", "Lưu: VT.",
                  "GIÁM ĐỐC"):
        assert words in text, words
    assert "Kế hoạch kế hoạch" not in text and "Báo cáo báo cáo" not in text.replace("BÁO CÁO", "")
    runs = {r.text: r for t in doc.tables[:1] for c in t.rows[0].cells for p in c.paragraphs for r in p.runs}
    assert runs["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"].bold and runs["Độc lập - Tự do - Hạnh phúc"].bold
    assert runs["SỞ NỘI VỤ"].bold and not runs["UBND TỈNH HẢI DƯƠNG"].bold
    assert runs[dated].italic
    for run in runs.values():
        assert run.font.name == "Times New Roman"
    kind = next(p for p in doc.paragraphs if p.text == "BÁO CÁO")
    assert kind.runs[0].bold and kind.runs[0].font.size.pt >= 13


def test_report_docx_tables_cover_every_unit_the_plan_asked(year):
    doc = Document(str(year.docs.folder / "report.docx"))
    results = [t for t in doc.tables if [c.text for c in t.rows[0].cells][:3] == ["STT", "Cơ quan, đơn vị",
                                                                                   "Thời điểm báo cáo"]]
    assert len(results) == 3  # one per tier
    asked = _asked_by_tier(year)
    assert sum(len(v) for v in asked.values()) == year.data["total"]["counts"]["expected"] == 265
    for tier, table in zip(TIERS, results):
        rows = [[c.text for c in r.cells] for r in table.rows[1:]]
        units = [r for r in rows if r[0].isdigit()]
        assert [int(r[0]) for r in units] == list(range(1, len(units) + 1))
        assert collections.Counter(r[1] for r in units) == collections.Counter(asked[tier]), tier
    communes = results[2]
    groups = [r.cells[0].text for r in communes.rows[1:] if not r.cells[0].text.isdigit()]
    assert "UBND huyện Gia Lộc: 17/18 đơn vị đã báo cáo" in groups  # communes under their district
    late = next(r for r in results[0].rows if r.cells[1].text.startswith("Ban Quản lý các khu công nghiệp"))
    assert late.cells[2].text == "10/12/2022 00:00:01" and late.cells[3].text == "Quá hạn"  # seconds decide


def test_annex_xlsx_has_one_row_per_unit_of_each_tier_and_the_reports_totals(year):
    wb = load_workbook(year.docs.folder / "annex.xlsx")
    assert wb.sheetnames == list(TIERS.values())
    asked = _asked_by_tier(year)
    by_code = {r["code"]: r for r in [*year.data["departments"], *year.data["districts"], *year.data["communes"]]}
    for tier, name in TIERS.items():
        ws = wb[name]
        header = [c.value for c in ws[1]]
        assert header[:4] == ["STT", "Mã đơn vị", "Đơn vị", "Thuộc đơn vị cấp huyện"]
        assert "g1.1" in header[8] and header[-2].startswith("Tổng điểm") and header[-1] == "Xếp loại"
        assert ws.freeze_panes == "D2" and ws.auto_filter.ref == f"A1:{ws.cell(1, len(header)).column_letter}" \
                                                                  f"{ws.max_row}"
        rows = list(ws.iter_rows(min_row=2, values_only=True))
        assert sorted(r[2] for r in rows) == sorted(asked[tier])
        for r in rows:
            unit = by_code[r[1]]
            assert r[-2] == unit["score"] and r[-1] == unit["classification"]
            if unit["score"] is not None:
                assert isinstance(r[-2], (int, float)) and isinstance(r[5], dt.datetime)  # numbers, times
                assert sum(r[8:-2]) == pytest.approx(r[-2])  # every criterion's score, adding up
        reported = sum(1 for r in rows if r[-2] is not None)
        assert reported == sum(by_code[r[1]]["status"] in ("on_time", "late") for r in rows)
    total = sum(wb[n].max_row - 1 for n in TIERS.values())
    assert total == year.data["total"]["counts"]["expected"]


def test_report_pdf_first_page_looks_like_a_vietnamese_administrative_report(year):
    _need_pdf_tools()
    pdf = year.docs.folder / "report.pdf"
    assert pdf.is_file(), year.docs.note
    SHOTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                    str(SHOTS / "report-page1")], check=True, timeout=60)
    assert (SHOTS / "report-page1.png").stat().st_size > 10_000
    first = subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-layout", str(pdf), "-"], check=True,
                           capture_output=True, text=True, timeout=60).stdout
    for words in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc", "SỞ NỘI VỤ", "BÁO CÁO"):
        assert words in first, words
    info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True, text=True).stdout
    assert "pts (A4)" in info


def test_without_libreoffice_the_docx_and_xlsx_are_kept_and_it_says_so(year, tmp_path, monkeypatch):
    monkeypatch.setenv("PLANFLOW_SOFFICE", str(tmp_path / "no-such-soffice"))
    docs = write_latest(year.engine, year.root, tmp_path / "documents")
    assert {p.name for p in docs.files} == {"report.docx", "annex.xlsx"} and "LibreOffice" in docs.note
    out = tmp_path / "out"
    (out).mkdir()
    (out / "report.pdf").write_bytes(b"an old one")
    assert sorted(p.name for p in export(docs, out)) == ["annex.xlsx", "report.docx"]
    assert not (out / "report.pdf").exists()


def test_documents_go_beside_the_outbox_unless_a_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("PLANFLOW_DOCUMENTS_DIR", raising=False)
    assert documents_dir(tmp_path / "live" / "outbox") == tmp_path / "live" / "documents"
    monkeypatch.setenv("PLANFLOW_DOCUMENTS_DIR", str(tmp_path / "docs"))
    assert documents_dir(tmp_path / "live" / "outbox") == tmp_path / "docs"


def test_a_plan_may_bring_its_own_template(plan, tmp_path):
    assert template_path(plan) == REPO / "definitions" / "templates" / "report.docx"
    own = tmp_path / "templates"
    own.mkdir()
    (own / "report.docx").write_bytes(b"")
    assert template_path(SimpleNamespace(template_dir=None, path=tmp_path / "plan.yaml")) == own / "report.docx"


def test_the_report_upward_letter_carries_the_pdf_and_the_xlsx_once(year, tmp_path):
    from planflow.flows.delivery import deliver_pending
    from planflow.flows.runtime import RunRef
    from planflow.notifications import FileChannel

    with year.engine.db.connect() as conn:
        rows = conn.execute(select(store.outbox).where(store.outbox.c.kind == "report-upward")).all()
    assert len(rows) == 2  # the rows hold no file: at most the report's id
    assert all(len(json.dumps(r.context)) < 20_000 and "attachments" not in r.context for r in rows)
    ref = RunRef(definition=str(year.engine.plan.path), db_url=str(year.engine.db.url), root_key=KEY,
                 outbox_dir=str(tmp_path / "outbox"))
    channel = FileChannel(tmp_path / "outbox")
    at = dt.datetime(2022, 12, 16, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    assert deliver_pending(ref, at, only=[r.id for r in rows], channel=channel) == 2
    assert deliver_pending(ref, at, only=[r.id for r in rows], channel=channel) == 0  # exactly once
    letters = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(letters) == 2
    report_kind = "pdf" if shutil.which("soffice") else "docx"
    for path in letters:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        files = {p.get_filename(): p.get_payload(decode=True) for p in msg.iter_attachments()}
        names = sorted(files)
        assert names == [f"bao-cao-hai-duong-dan-van-2022-lan-1.{report_kind}",
                         "phu-luc-hai-duong-dan-van-2022-lan-1.xlsx"], names
        annex = load_workbook(io.BytesIO(files[names[1]]))
        assert sum(ws.max_row - 1 for ws in annex.worksheets) == 265
        assert msg.get_body(("plain",)) is not None  # the letter itself is still there


def test_a_letter_carries_the_documents_written_for_its_report_as_they_are(year, monkeypatch):
    """The report's files in the documents folder are what its letter attaches, byte for
    byte, and they are not made again (LibreOffice's PDF costs seconds per run)."""
    from planflow import documents

    row = SimpleNamespace(kind="report-upward", key="latest-report", context={"report_id": year.report.id},
                          instance_id=year.root, created_at=year.report.created_at)
    written = {p.name: p.read_bytes() for p in year.docs.files}

    def not_again(*args):
        raise AssertionError("the documents were made again")

    monkeypatch.setattr(documents, "build", not_again)
    files = documents.attachments_for(year.engine.plan, year.engine.db, row, directory=year.folder / "documents")
    report = "report.pdf" if "report.pdf" in written else "report.docx"
    assert [(name, data) for name, data, _ in files] == [
        (f"bao-cao-hai-duong-dan-van-2022-lan-2.{report.rsplit('.')[-1]}", written[report]),
        ("phu-luc-hai-duong-dan-van-2022-lan-2.xlsx", written["annex.xlsx"])]
    with pytest.raises(AssertionError, match="made again"):  # no folder named: made from the stored report
        documents.attachments_for(year.engine.plan, year.engine.db, row)


def test_a_districts_own_report_carries_the_districts_heading(year):
    """UBND huyện Thanh Hà aggregates its communes (``aggregate_communes``): its report is
    headed and signed by the district, lists each of its communes, and goes to UBND tỉnh
    through Sở Nội vụ; it does not call the district itself a unit that never reported."""
    with year.engine.db.connect() as conn:
        row = conn.execute(select(store.reports.c.markdown, store.reports.c.data)
                           .join(store.instances, store.instances.c.id == store.reports.c.instance_id)
                           .where(store.instances.c.scope_unit == "ubnd-huyen-thanh-ha")).one()
    md = row.markdown
    assert md.splitlines()[0].startswith("| UBND TỈNH HẢI DƯƠNG<br>**UBND HUYỆN THANH HÀ** |")
    assert "Số: …/BC-UHTH" in md and "SỞ NỘI VỤ" not in md
    assert "UBND huyện Thanh Hà tổng hợp kết quả tự đánh giá" in md
    assert "UBND huyện Thanh Hà báo cáo UBND tỉnh Hải Dương, Sở Nội vụ./." in md
    assert "không gửi báo cáo đến hết thời hạn. " not in md  # the district is the maker, not a late unit
    communes = year.engine.plan.registry.group("communes")
    own = [u.name for u in communes if u.parent == "ubnd-huyen-thanh-ha"]
    section = md.split("KẾT QUẢ CỦA UBND CẤP XÃ", 1)[1]
    assert len(own) == 20 and all(f"| {name} |" in section for name in own)
    assert row.data["maker"] == "ubnd-huyen-thanh-ha"
