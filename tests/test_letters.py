"""Every letter of the shipped simulation, read as an official reads it (issue 12).

The shipped plan year is run on the engine alone (as ``tests/test_counts.py`` does) and
every outbox row is delivered by ``flows.delivery.deliver_pending`` at the moment it is
due, into a file channel; then each letter is read: no word doubled ("Kế hoạch kế hoạch",
"Báo cáo báo cáo"), every Date in +0700, every unit told to send its results to the body
its task reports to (a commune to its own district), no unit escalating about itself, and
the body that signs each letter is the one it comes from.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from email.utils import parseaddr

import pytest

from planflow import Engine, connect, load_scenario
from planflow.simulation import first_start, run_year
from tests.conftest import PLAN, SCENARIO
from planflow.simulation import EngineActions

KEY = "hai-duong-dan-van-2022/2022/letters"
SEND_TO = re.compile(r"(?:gửi|báo cáo) kết quả về (.+?)(?: chậm nhất| trong | đúng|[.;]|$)", re.MULTILINE)
DOUBLED = re.compile(r"\b(\w+) \1\b", re.IGNORECASE)


class Delivering(EngineActions):
    """The engine's moments, each followed by the delivery of what it queued (as the stage
    flows do), at that moment."""

    def __init__(self, engine, root, ref):
        super().__init__(engine, root)
        self.ref = ref

    async def drive(self, clock) -> None:
        from planflow.flows.delivery import deliver_pending

        await super().drive(clock)
        deliver_pending(self.ref, clock)

    async def sweep(self, clock) -> None:
        from planflow.flows.delivery import deliver_pending

        await super().sweep(clock)
        deliver_pending(self.ref, clock)


@pytest.fixture(scope="module")
def year(tmp_path_factory, plan):
    """The shipped year, delivered: (plan, [(file name, parsed e-mail, plain text)])."""
    from planflow.flows.runtime import RunRef

    tmp = tmp_path_factory.mktemp("letters")
    url = f"sqlite:///{tmp / 'planflow.db'}"
    engine = Engine(plan, connect(url))
    clock = first_start(plan)
    root = engine.start(KEY, clock)
    ref = RunRef(definition=str(PLAN), db_url=url, root_key=KEY, outbox_dir=str(tmp / "outbox"))
    actions = Delivering(engine, root, ref)
    asyncio.run(actions.drive(clock))
    asyncio.run(run_year(engine, load_scenario(SCENARIO, plan), root, clock, actions))
    letters = []
    for path in sorted((tmp / "outbox").glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text = next(p.get_content() for p in msg.walk() if p.get_content_type() == "text/plain")
        letters.append((path.name, msg, text))
    STORES[id(plan)] = url
    return plan, letters


STORES: dict[int, str] = {}


@pytest.fixture(scope="module")
def letters_store(year):
    return STORES[id(year[0])]


def _kind(msg) -> str:
    return str(msg["X-Planflow-Kind"])


def _signature(text: str) -> str:
    """The body that signs a letter: the line after "Trân trọng."."""
    lines = [line.strip() for line in text.splitlines()]
    return next(lines[i + 2] for i, line in enumerate(lines) if line == "Trân trọng.")


def _unit_by_address(plan, header: str):
    address = parseaddr(header)[1]
    return next((u for u in plan.registry.units if u.email == address), None)


def test_the_year_sends_every_kind_of_letter(year):
    _, letters = year
    kinds = {_kind(m) for _, m, _ in letters}
    assert len(letters) > 600
    assert kinds >= {"dissemination", "reminder", "overdue", "escalation-1", "escalation-2", "escalation-final",
                     "report-upward", "review-request", "review-result", "publication"}


def test_no_word_is_doubled(year):
    _, letters = year
    for name, msg, text in letters:
        for where in (str(msg["Subject"]), text):
            assert "Kế hoạch kế hoạch" not in where and "Báo cáo báo cáo" not in where, name
            doubled = DOUBLED.search(where)
            assert doubled is None, f"{name}: '{doubled.group(0)}' in {where[:200]!r}"


def test_every_date_header_is_in_vietnam_time(year):
    _, letters = year
    zones = {str(m["Date"]).rsplit(" ", 1)[-1] for _, m, _ in letters}
    assert zones == {"+0700"}


def test_a_document_is_cited_as_an_official_cites_it(year):
    plan, letters = year
    issuer = plan.registry.group("issuer")[0].name
    for name, msg, text in letters:
        if _kind(msg) in ("dissemination", "reminder", "overdue") or _kind(msg).startswith("escalation"):
            assert f"Kế hoạch số …/KH-UBND của {issuer} về triển khai thực hiện" in text \
                or "Kế hoạch số …/KH-UBND về triển khai thực hiện" in text, name
        assert " về kế hoạch" not in text, name


def test_every_commune_is_told_to_report_to_its_own_district(year):
    plan, letters = year
    reg = plan.registry
    communes = {u.code for u in reg.group("communes")}
    seen = 0
    for name, msg, text in letters:
        unit = _unit_by_address(plan, str(msg["To"]))
        if unit is None or unit.code not in communes:
            continue
        district = reg.get(unit.parent).name
        told = SEND_TO.findall(text)
        assert told and set(told) == {district}, f"{name}: told to send to {told}, not {district}"
        seen += 1
    assert seen > 235  # each commune's dissemination, and the reminders


def test_province_units_are_told_to_report_to_the_issuer_through_the_coordinator(year):
    plan, letters = year
    asked = {u.code for g in ("departments", "districts") for u in plan.registry.group(g)}
    for name, msg, text in letters:
        unit = _unit_by_address(plan, str(msg["To"]))
        if unit is not None and unit.code in asked and _kind(msg) in ("dissemination", "reminder", "overdue"):
            assert set(SEND_TO.findall(text)) == {"UBND tỉnh Hải Dương (qua Sở Nội vụ)"}, name


def test_no_unit_escalates_about_itself(year):
    plan, letters = year
    for name, msg, text in letters:
        if not _kind(msg).startswith("escalation") and _kind(msg) not in ("overdue", "reminder"):
            continue
        signer = _signature(text)
        listed = re.findall(r"^\d+\. (.+?): hạn chậm nhất", text, re.MULTILINE)
        if _kind(msg) in ("overdue", "reminder"):
            listed = [_unit_by_address(plan, str(msg["To"])).name]
        assert listed, name
        assert signer not in listed, f"{name}: {signer} escalates about itself"


def test_a_district_passes_the_plan_to_its_communes_in_its_own_name(year):
    plan, letters = year
    reg = plan.registry
    checked = 0
    for name, msg, text in letters:
        unit = _unit_by_address(plan, str(msg["To"]))
        if _kind(msg) != "dissemination" or unit is None or "communes" not in unit.groups:
            continue
        district = reg.get(unit.parent).name
        assert text.split("\n\n")[2].startswith(f"{district} trân trọng gửi {unit.name} Kế hoạch số"), name
        assert str(msg["Subject"]).startswith(f"{district} triển khai Kế hoạch số"), name
        assert _signature(text) == district, name
        checked += 1
    assert checked == len(reg.group("communes"))


def test_each_letter_comes_from_the_body_that_signs_it(year):
    plan, letters = year
    for name, msg, text in letters:
        if _kind(msg) == "incident":
            continue
        sender = _unit_by_address(plan, str(msg["From"]))
        assert sender is not None and sender.name == _signature(text), f"{name}: From {msg['From']}"
        assert parseaddr(str(msg["From"]))[0] == sender.name, name


def test_each_letter_names_a_signer_that_sender_address_gives(year, letters_store):
    """What delivery must use as From (``letters.sender_address``): the signing body."""
    from sqlalchemy import select

    from planflow import letters as lt
    from planflow import outbox
    from planflow import store as s

    plan, _ = year
    with connect(letters_store).connect() as conn:
        rows = conn.execute(select(s.outbox)).all()
    assert len(rows) == len(year[1])
    for row in rows:
        if row.kind == "incident":
            continue
        context = outbox.render_context(plan, row, connect(letters_store))
        unit = plan.registry.get(context["sender"]["code"])
        assert lt.sender_address(plan, context) == f'"{unit.name}" <{unit.email}>', row.key
        assert lt.sender_address(plan, context, "planflow@example.org") == f'"{unit.name}" <planflow@example.org>'


def test_the_report_reads_as_sent(year, letters_store):
    """report.md: reporting status and classification apart, per tier; seconds where they
    decide the status; the districts' submission times; what became of the communes of a
    district that did not report; the units not classified, tier by tier."""
    from sqlalchemy import select

    from planflow import store as s

    plan, _ = year
    with connect(letters_store).connect() as conn:
        report = conn.execute(select(s.reports).order_by(s.reports.c.id.desc()).limit(1)).first()
    md, data = report.markdown, report.data
    assert "Báo cáo báo cáo" not in md and "Kế hoạch kế hoạch" not in md
    assert data["subject"].startswith("Kết quả đánh giá, xếp loại việc thực hiện Kế hoạch số")
    assert set(data["tiers"]) == {"department", "district", "commune"}
    assert sum(t["counts"]["expected"] for t in data["tiers"].values()) == data["total"]["counts"]["expected"]
    status, classes = md.split("### 1. Tình hình báo cáo")[1].split("### 2. Kết quả đánh giá, xếp loại")
    assert "Không đủ điều kiện xếp loại" not in status and "Phải báo cáo" not in classes
    assert "| Nội dung | Sở, ban, ngành | UBND cấp huyện | UBND cấp xã | Tổng số |" in status
    # a report one second after the deadline says so: not "10/12/2022 00:00 – Quá hạn"
    assert "| 10/12/2022 00:00:01 | Quá hạn |" in md and "| 10/12/2022 00:00 | Quá hạn |" not in md
    districts = md.split("KẾT QUẢ CỦA UBND CẤP HUYỆN VÀ CẤP XÃ")[1].split("ĐƠN VỊ KHÔNG ĐỦ")[0]
    assert "| STT | Đơn vị | Thời điểm báo cáo | Tình trạng |" in districts
    assert "| UBND huyện Thanh Miện | 14/12/2022 10:00 | Quá hạn |" in districts
    assert "UBND thị xã Kinh Môn không gửi báo cáo đến hết thời hạn. 23/23 UBND cấp xã" in districts
    missing = md.split("ĐƠN VỊ KHÔNG ĐỦ ĐIỀU KIỆN XẾP LOẠI")[1]
    assert missing.index("**1. Sở, ban, ngành** (1)") < missing.index("- Sở Y tế") \
        < missing.index("**2. UBND cấp huyện** (1)") < missing.index("- UBND thị xã Kinh Môn") \
        < missing.index("**3. UBND cấp xã** (2)") < missing.index("- UBND xã Gia Tân (UBND huyện Gia Lộc)")
    assert "**GIÁM ĐỐC**" in md and "Số: …/BC-SNV" in md
