"""A picture of progress and the review quoted in the report (issue 10).

The shipped plan and scenario run on the engine alone (as tests/test_documents.py runs them):
the charts are SVG drawings the width of the Prefect UI (and PNG images for files), drawn from
the store's counts; the
report people read after Ban Dân vận's review says who decided, when, what and why, every round.
The images are kept under test-output/charts/: look at them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
from types import SimpleNamespace

import pytest
from lxml import etree
from PIL import Image
from sqlalchemy import select

from planflow import Engine, load_scenario, store
from planflow.aggregation import GROUP_NAMES, group_of
from planflow.chart_svg import day_ticks, value_ticks
from planflow.charts import (
    FILES,
    NOT_REPORTED,
    chart_pngs,
    charts_markdown,
    tiers_at,
    write_pngs,
)
from planflow.report import (
    latest_markdown,
    latest_report,
    review_markdown,
    reviewer_name,
    reviews,
)
from planflow.simulation import EngineActions, first_start, run_year
from tests.conftest import REPO, SCENARIO

KEY = "hai-duong-dan-van-2022/2022/charts"
SHOTS = REPO / "test-output" / "charts"
VN = dt.timezone(dt.timedelta(hours=7))
DATA_URI = re.compile(r"!\[([^\]]+)\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)")


@pytest.fixture(scope="module")
def year(plan, tmp_path_factory):
    folder = tmp_path_factory.mktemp("charts")
    engine = Engine(plan, store.connect(f"sqlite:///{folder / 'planflow.db'}"))
    clock = first_start(plan)
    root = engine.start(KEY, clock)
    scenario = load_scenario(SCENARIO, plan)
    asyncio.run(run_year(engine, scenario, root, clock, EngineActions(engine, root)))
    return SimpleNamespace(engine=engine, root=root, scenario=scenario, folder=folder,
                           end=engine.instance(root).ended_at)


def _drawings(markdown: str) -> dict[str, etree._Element]:
    out = {}
    for title, data in DATA_URI.findall(markdown):
        raw = base64.b64decode(data)
        assert len(raw) < 60_000, f"{title}: {len(raw)} bytes"
        out[title] = etree.fromstring(raw)
    return out


def _words(svg: etree._Element) -> list[str]:
    return ["".join(t.itertext()) for t in svg.iter("{http://www.w3.org/2000/svg}text")]


def _received_in_store(engine, root, as_of) -> dict[str, int]:
    """Per tier, the units whose self-evaluation the store holds at ``as_of``, counted here
    from the tables, apart from the charts' code."""
    plan = engine.plan
    criteria = [e.id for p in [plan.definition.main, *plan.definition.subprocesses] for e in p.elements
                if e.type == "userTask" and e.form and plan.forms[e.form].kind == "criteria"]
    with engine.db.connect() as conn:
        codes = conn.scalars(select(store.submissions.c.unit_code).join(
            store.work_items, store.work_items.c.id == store.submissions.c.work_item_id).where(
            store.work_items.c.instance_id.in_(store.tree_ids(conn, root)),
            store.work_items.c.element_id.in_(criteria), store.submissions.c.submitted_at <= as_of)).all()
    out = dict.fromkeys(GROUP_NAMES, 0)
    for code in set(codes):
        out[group_of(plan.registry.get(code))] += 1
    return out


def test_the_charts_are_drawings_the_width_of_the_prefect_ui_and_say_the_store_s_counts(year):
    markdown = charts_markdown(year.engine, year.root, year.end)
    drawings = _drawings(markdown)
    assert list(drawings) == ["Báo cáo tự đánh giá nhận được theo ngày", "Kết quả xếp loại theo cấp"]
    for svg in drawings.values():
        assert svg.get("width") == "1000" and 250 <= float(svg.get("height")) <= 450
    received, classes = (_words(svg) for svg in drawings.values())
    tiers = tiers_at(year.engine, year.root, year.end)
    for tier in tiers:  # each panel's title: its counts and due days, in Vietnam time
        dues = ", ".join(f"{d:%d/%m}" for d in sorted(tier.due))
        assert f"{tier.name}: {len(tier.received)}/{tier.asked} (hạn {dues})" in received
        assert f"{tier.name} ({tier.asked} đơn vị)" in classes
    assert received[0] == f"Báo cáo tự đánh giá nhận được theo ngày (đến {year.end.astimezone(VN):%d/%m/%Y})"
    assert "Số đơn vị đã báo cáo (cộng dồn)" in received and "Hạn báo cáo" in received
    communes = next(t for t in tiers if t.key == "commune")
    assert str(communes.classes["Khá"]) in classes  # a bar's count
    lines = [s.text for s in drawings["Kết quả xếp loại theo cấp"].iter("{http://www.w3.org/2000/svg}tspan")]
    assert ["Không đủ điều", "kiện xếp loại"] == lines[lines.index("Không đủ điều"):][:2]  # a label wrapped


def test_the_charts_as_png_files(year):
    SHOTS.mkdir(parents=True, exist_ok=True)
    written = write_pngs(year.engine, year.root, year.end, SHOTS)
    assert sorted(p.name for p in written) == sorted(FILES.values())
    for path in written:
        image = Image.open(path)
        assert image.format == "PNG" and image.width == 1000 and 250 <= image.height <= 450
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000)) > 20  # something is drawn, in colour


@pytest.mark.parametrize("days", [3, 12, 40, 120, 400])
def test_the_time_axis_marks_a_few_days_within_the_chart(days):
    start = dt.date(2022, 11, 20)
    end = start + dt.timedelta(days=days)
    ticks = day_ticks(start, end)
    assert 2 <= len(ticks) <= 5, ticks  # readable: never crowded, never empty
    assert all(start <= d <= end for d in ticks) and ticks == sorted(set(ticks))


@pytest.mark.parametrize("top", [1.2, 13.4, 20.2, 263.2, 12_000.0])
def test_the_count_axis_steps_by_round_numbers(top):
    ticks = value_ticks(top)
    step = ticks[1] - ticks[0]
    assert ticks[0] == 0 and ticks == list(range(0, int(top) + 1, step)) and len(ticks) <= 8
    assert ticks[-1] + step > top  # the last mark is the highest that fits
    assert str(step).rstrip("0") in {"1", "2", "25", "3", "5"}, step


def test_the_counts_drawn_are_the_store_s_and_the_report_s(year):
    with year.engine.db.connect() as conn:
        report = latest_report(conn, year.root).data
    tiers = {t.key: t for t in tiers_at(year.engine, year.root, year.end)}
    assert list(tiers) == list(report["tiers"]) == ["department", "district", "commune"]
    form = year.engine.plan.forms[report["form"]]
    bands = [b.label for b in sorted(form.bands, key=lambda b: -b.min)]  # the plan's bands, not code's
    received = _received_in_store(year.engine, year.root, year.end)
    for key, tier in tiers.items():
        counts = report["tiers"][key]["counts"]
        assert tier.asked == counts["expected"]
        assert len(tier.received) == counts["on_time"] + counts["late"] == received[key]
        assert list(tier.classes) == [*bands, form.not_classifiable, NOT_REPORTED]
        assert {k: v for k, v in tier.classes.items() if k != NOT_REPORTED} == report["tiers"][key]["classes"]
        assert tier.classes[NOT_REPORTED] == 0 and sum(tier.classes.values()) == tier.asked
    assert (tiers["department"].asked, tiers["district"].asked, tiers["commune"].asked) == (18, 12, 235)
    assert {d.strftime("%d/%m") for d in tiers["department"].due} == {"09/12"}  # Vietnam time, not UTC
    assert {d.strftime("%d/%m") for d in tiers["commune"].due} == {"02/12"}


def test_mid_year_the_charts_count_what_had_arrived_and_nothing_is_not_classified_before_its_close(year):
    moment = dt.datetime(2022, 12, 5, 12, 0, tzinfo=VN)  # communes due 2/12, closed 7/12
    tiers = {t.key: t for t in tiers_at(year.engine, year.root, moment)}
    received = _received_in_store(year.engine, year.root, moment)
    for key, tier in tiers.items():
        assert len(tier.received) == received[key]
        assert max(tier.received) <= moment.date()
        assert tier.classes["Không đủ điều kiện xếp loại"] == 0
        assert tier.classes[NOT_REPORTED] == tier.asked - received[key]
    assert 0 < received["department"] < 18 and received["commune"] > 200
    assert chart_pngs(year.engine, year.root, moment)


def test_before_any_report_there_is_nothing_to_draw(year):
    start = first_start(year.engine.plan)
    assert charts_markdown(year.engine, year.root, start + dt.timedelta(days=1)) is None
    assert write_pngs(year.engine, year.root, start, year.folder / "empty") == []


def test_the_report_quotes_every_round_of_the_review(year):
    plan = year.engine.plan
    choices = plan.forms["review-decision"].fields[0].choices
    reviewer = plan.registry.group("reviewers")[0].name
    report = latest_markdown(year.engine, year.root)
    section = report.split("## Ý KIẾN THẨM ĐỊNH CỦA BAN DÂN VẬN TỈNH ỦY", 1)[1]
    assert "\n\n---\n" in report  # a rule, not the signer's title turned into a heading
    rows = [r for r in section.splitlines() if r.startswith("- **Lần ")]
    assert len(rows) == len(year.scenario.review) == 2
    for n, (row, decided) in enumerate(zip(rows, year.scenario.review), start=1):
        when = decided.at.astimezone(VN).strftime("%d/%m/%Y %H:%M")
        comment = f"“{decided.comment}”" if decided.comment else "không có"
        assert row == (f"- **Lần {n}** — {reviewer}, {when} (+07:00). Kết luận: **{choices[decided.decision]}**. "
                       f"Ý kiến: {comment}."), row
    assert "Trả lại, đề nghị bổ sung" in rows[0] and "Bổ sung số liệu cấp xã" in rows[0]
    assert "Thống nhất" in rows[1] and "đang chờ" not in section


def test_a_round_not_yet_reviewed_says_so(year):
    with year.engine.db.connect() as conn:
        decisions = reviews(conn, year.engine.plan, store.tree_ids(conn, year.root))
    section = review_markdown(year.engine.plan, decisions[:1], 2)
    assert "- **Lần 1** — Ban Dân vận Tỉnh ủy, 20/12/2022 09:00 (+07:00)." in section and "Lần 2" not in section
    assert "*Báo cáo lần 2 đang chờ ý kiến thẩm định của Ban Dân vận Tỉnh ủy.*" in section


def test_the_reviewer_is_named_with_their_body(plan):
    assert reviewer_name(plan, "ban-dan-van-tinh-uy", "unit") == "Ban Dân vận Tỉnh ủy"  # a simulation
    assert reviewer_name(plan, "ban-dan-van-tinh-uy", "Nguyễn Văn B") == "Nguyễn Văn B (Ban Dân vận Tỉnh ủy)"
    assert reviewer_name(plan, "ban-dan-van-tinh-uy", "ban-dan-van-tinh-uy:Nguyễn Văn B") == \
        "Nguyễn Văn B (Ban Dân vận Tỉnh ủy)"
