"""The shipped two-tier plan (Hải Phòng 2026, after the July-2025 reform: no district level),
read as a city's officials read it (issue 11).

The plan year is run on the engine alone with its shipped scenario, every letter delivered
at its moment into a file channel (as ``tests/test_letters.py`` runs the Hải Dương year):
no letter nor report says "UBND tỉnh", "Tỉnh ủy" or "cấp huyện"; every commune's result is
in the report and its documents; no district tier shows anywhere (summary, progress tables,
report, docx, annex); the report is headed by the city's Sở Nội vụ.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import io
from types import SimpleNamespace

import pytest
import yaml
from docx import Document
from openpyxl import load_workbook

from planflow import Engine, connect, load_plan, load_scenario
from planflow.documents import write_latest
from planflow.progress import instance_progress
from planflow.report import latest_markdown, latest_report, render_markdown
from planflow.simulation import first_start, run_year
from planflow.summary import build_summary
from tests.conftest import REPO
from tests.test_letters import Delivering

PLAN = REPO / "definitions" / "hai-phong-dan-van-2026.yaml"
SCENARIO = REPO / "definitions" / "scenarios" / "hai-phong-2026.yaml"
REGISTRY = REPO / "definitions" / "registries" / "hai-phong-2026.yaml"
KEY = "hai-phong-dan-van-2026/2026/two-tier"
PROVINCE_WORDS = ("ubnd tỉnh", "tỉnh ủy", "cấp huyện")  # what a city's reader must never see


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    """The shipped Hải Phòng year, delivered: its engine, root, letters, report and documents."""
    from planflow.flows.runtime import RunRef

    plan = load_plan(PLAN)
    tmp = tmp_path_factory.mktemp("two-tier")
    url = f"sqlite:///{tmp / 'planflow.db'}"
    engine = Engine(plan, connect(url))
    clock = first_start(plan)
    root = engine.start(KEY, clock)
    actions = Delivering(engine, root, RunRef(definition=str(PLAN), db_url=url, root_key=KEY,
                                              outbox_dir=str(tmp / "outbox")))
    asyncio.run(actions.drive(clock))
    asyncio.run(run_year(engine, load_scenario(SCENARIO, plan), root, clock, actions))
    letters = []
    for path in sorted((tmp / "outbox").glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        parts = [p.get_content() for p in msg.walk() if p.get_content_type() in ("text/plain", "text/html")]
        letters.append((path.name, msg, str(msg["Subject"]), *parts))
    docs = write_latest(engine, root, tmp / "documents")
    summary = build_summary(engine, root)
    return SimpleNamespace(plan=plan, engine=engine, root=root, letters=letters, docs=docs, summary=summary,
                           markdown=latest_markdown(engine, root))


def communes(plan) -> list:
    return [u for u in plan.registry.units if u.kind == "ubnd-cap-xa"]


def _docx_text(path) -> str:
    doc = Document(str(path))
    return "\n".join([p.text for p in doc.paragraphs] + [c.text for t in doc.tables for r in t.rows for c in r.cells])


def test_the_shipped_registry_is_what_planflow_registry_builds():
    from planflow.registry_build import build_registry, checked_text

    built = build_registry("31", dt.date(2026, 1, 1), None)
    assert checked_text(built, str(REGISTRY)) == REGISTRY.read_text(encoding="utf-8")
    plan = load_plan(PLAN)
    assert len(communes(plan)) == 114 and not [u for u in plan.registry.units if u.kind == "ubnd-cap-huyen"]
    assert plan.registry.root.kind == "thanh-pho"


def test_the_year_completes_with_every_unit_asked(year):
    assert year.summary["status"] == "completed" and year.summary["review_rounds"] == 2
    assert len(year.summary["units"]) == 12 + 114
    kinds = {msg["X-Planflow-Kind"] for _, msg, *_ in year.letters}
    assert {"dissemination", "reminder", "report-upward", "review-request", "review-result", "publication"} <= kinds


def test_no_letter_nor_report_speaks_of_a_province_or_a_district(year):
    for name, _, *texts in year.letters:
        for text in texts:
            found = [w for w in PROVINCE_WORDS if w in text.lower()]
            assert not found, (name, found)
    for text in (year.markdown, _docx_text(year.docs.folder / "report.docx")):
        assert not [w for w in PROVINCE_WORDS if w in text.lower()]
        assert "thành phố hải phòng" in text.lower()


def test_communes_are_told_to_report_to_the_city_through_so_noi_vu(year):
    dissemination = [text for name, _, _, text, _ in year.letters
                     if "%3Adissemination%3A" in name and "ubnd-xa-binh-giang" in name]
    assert len(dissemination) == 1
    assert "báo cáo kết quả về UBND thành phố Hải Phòng (qua Sở Nội vụ)" in dissemination[0]


def test_every_commune_has_its_result_in_the_report(year):
    md = year.markdown
    section = md.split("KẾT QUẢ CỦA UBND CẤP XÃ", 1)[1].split("ĐƠN VỊ KHÔNG ĐỦ")[0]
    for unit in communes(year.plan):
        assert f"| {unit.name} |" in section, unit.name
    assert "| UBND xã Bình Giang | 14/12/2026 10:00 | Quá hạn |" in section
    assert "| UBND đặc khu Bạch Long Vĩ | — | Không báo cáo | — | Không đủ điều kiện xếp loại |" in section
    # a commune that never reported is named without a district to belong to
    assert "- UBND đặc khu Bạch Long Vĩ\n" in md and "(UBND thành phố Hải Phòng)" not in md
    docx = _docx_text(year.docs.folder / "report.docx")
    assert all(u.name in docx for u in communes(year.plan))
    # the published results name every commune too (no district rolls them up)
    published = [text for _, msg, _, text, _ in year.letters if msg["X-Planflow-Kind"] == "publication"]
    assert published and all(f". {u.name}: " in published[0] for u in communes(year.plan))


def test_no_district_tier_anywhere(year):
    summary = year.summary
    assert list(summary["tiers"]) == ["department", "commune"]
    assert {u["group"] for u in summary["units"].values()} == {"department", "commune"}
    assert all(u["district"] is None for u in summary["units"].values())
    md = year.markdown
    assert "HUYỆN" not in md and "huyện" not in md and "Cấp xã: đúng hạn" not in md
    tables = Document(str(year.docs.folder / "report.docx")).tables
    headers = [[c.text for c in t.rows[0].cells] for t in tables]
    assert ["Xếp loại", "Sở, ban, ngành", "UBND cấp xã", "Tổng số"] in headers
    reporting = next([r.cells[0].text for r in t.rows] for t in tables if t.rows[0].cells[0].text == "Cấp")
    assert reporting == ["Cấp", "Sở, ban, ngành", "UBND cấp xã", "Tổng cộng"]
    wb = load_workbook(io.BytesIO((year.docs.folder / "annex.xlsx").read_bytes()))
    assert wb.sheetnames == ["Sở, ban, ngành", "UBND cấp xã"]
    header = [c.value for c in wb["UBND cấp xã"][1]]
    assert header[:4] == ["STT", "Mã đơn vị", "Đơn vị", "Hạn báo cáo (giờ Việt Nam, UTC+07:00)"]
    assert wb["UBND cấp xã"].max_row == 1 + 114
    row = next(r for r in wb["UBND cấp xã"].iter_rows(min_row=2, values_only=True) if r[1] == "ubnd-xa-binh-giang")
    assert row[3] == dt.datetime(2026, 12, 9, 23, 59, 59) and row[4] == dt.datetime(2026, 12, 14, 10, 0)
    view = instance_progress(year.engine, year.root, dt.datetime(2027, 1, 4, 8, tzinfo=year.plan.calendar.tz))
    assert list(view.tiers) == ["department", "commune"] and view.districts == []
    assert view.units and all("Huyện" not in row for row in view.units)


def test_the_report_is_headed_by_the_citys_so_noi_vu(year):
    first = year.markdown.splitlines()[0]
    assert first == ("| UBND THÀNH PHỐ HẢI PHÒNG<br>**SỞ NỘI VỤ** | **CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM**<br>"
                     "**Độc lập - Tự do - Hạnh phúc** |")
    assert "Sở Nội vụ báo cáo UBND thành phố Hải Phòng, Thành ủy Hải Phòng, Bộ Nội vụ./." in year.markdown
    assert "## Ý KIẾN THẨM ĐỊNH CỦA BAN TUYÊN GIÁO VÀ DÂN VẬN THÀNH ỦY" in year.markdown
    heading = [c.text for c in Document(str(year.docs.folder / "report.docx")).tables[0].rows[0].cells]
    assert heading[0].startswith("UBND THÀNH PHỐ HẢI PHÒNG\nSỞ NỘI VỤ")


def test_each_late_unit_climbs_the_ladder_written_in_the_scenario(year):
    scenario = yaml.safe_load(SCENARIO.read_text(encoding="utf-8"))
    climbed: dict[str, list] = {}
    for e in year.summary["escalations"]:
        climbed.setdefault(e["unit"], []).append([e["level"], e["at"][:16]])
    expected = {c: u["expect"]["escalations"] for c, u in scenario["units"].items() if "expect" in u}
    assert {c: climbed.get(c, []) for c in expected} == expected
    assert set(climbed) <= set(expected)


def test_a_plan_s_own_report_template_wins(year, tmp_path):
    (tmp_path / "aggregate-report.md.j2").write_text(
        "# {{ words.ubnd }} — {{ words.party }} — {{ bodies.maker }}: {{ data.total.counts.expected }} đơn vị\n",
        encoding="utf-8")
    own = dataclasses.replace(year.plan, template_dir=tmp_path, memo={})
    with year.engine.db.connect() as conn:
        data = latest_report(conn, year.root).data
    assert render_markdown(own, data) == "# UBND thành phố — Thành ủy — Sở Nội vụ: 126 đơn vị"
    assert render_markdown(year.plan, data).startswith("| UBND THÀNH PHỐ HẢI PHÒNG")
