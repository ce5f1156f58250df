"""What an operator reads in the artifacts, at a glance (issue 10): progress per tier whose
words agree with the bar, status words that fit the moment, one overdue row per unit with its
district and the step in Vietnamese, stalled items with the action that clears them, the
operator actions — every time in +07:00 and Vietnamese format. Read on a replayed year."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import update

from planflow import Engine, load_scenario, store
from planflow.progress import instance_progress
from planflow.simulation import EngineActions, first_start, run_year
from tests.conftest import SCENARIO

KEY = "hai-duong-dan-van-2022/2022/artifacts"


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def year(plan, tmp_path_factory):
    """The replayed year, its views at the first sweep after 14/12/2022 (mid-ladder) and at its end."""
    engine = Engine(plan, store.connect(f"sqlite:///{tmp_path_factory.mktemp('artifacts') / 'plan.db'}"))
    clock = first_start(plan)
    root = engine.start(KEY, clock)
    stop_at = dt.datetime(2022, 12, 12, 9, tzinfo=plan.calendar.tz)
    views: dict = {}

    class Actions(EngineActions):
        async def sweep(self, at):
            await super().sweep(at)
            if at >= stop_at and "mid" not in views:
                views["mid"] = instance_progress(engine, root, at)

    asyncio.run(Actions(engine, root).drive(clock))
    views["start"] = instance_progress(engine, root, clock)  # the plan disseminated, tasks opened
    asyncio.run(run_year(engine, load_scenario(SCENARIO, plan), root, clock, Actions(engine, root)))
    views["end"] = instance_progress(engine, root, engine.instance(root).ended_at)
    return engine, root, views


def test_progress_per_tier_says_what_its_bar_shows(year):
    _, _, views = year
    start, end = views["start"], views["end"]
    assert [(t.name, t.reported, t.expected) for t in start.tiers.values()] == [
        ("Sở, ban, ngành", 0, 18), ("UBND cấp huyện", 0, 12), ("UBND cấp xã", 0, 235)]
    assert sum(t.expected for t in end.tiers.values()) == end.expected == 265
    assert sum(t.reported for t in end.tiers.values()) == end.reported == 261
    for tier in [end.overall, *end.tiers.values()]:
        # the Prefect UI shows a progress artifact's value truncated: the words say the same
        assert tier.description.endswith(f"({int(tier.percent)}%)")
        assert f"{tier.reported}/{tier.expected} đơn vị đã báo cáo" in tier.description
    assert end.overall.description == "Tất cả đơn vị: 261/265 đơn vị đã báo cáo (98%)"


def test_before_its_due_date_a_unit_is_in_progress_not_alarming(year):
    _, _, views = year
    row = next(r for r in views["start"].units if r["Đơn vị"] == "Sở Y tế")
    assert row["Tình trạng"] == "đang thực hiện"
    assert row["QĐ 42"] == "chưa hoàn thành trong hạn"  # QĐ 42's own words, in their own column
    assert row["Hạn"] == "09/12/2022 23:59" and row["Gửi lúc"] == "—"
    assert list(row)[:4] == ["Đơn vị", "Huyện", "Tình trạng", "Đôn đốc"]
    late = next(r for r in views["mid"].units if r["Đơn vị"] == "Sở Y tế")
    assert late["Tình trạng"] == "quá hạn, chưa báo cáo" and late["QĐ 42"] == "chưa hoàn thành quá hạn"
    assert late["Đôn đốc"] == "2"


def test_overdue_units_one_row_each_with_district_and_step_highest_level_first(year):
    engine, _, views = year
    mid = views["mid"]
    rows = mid.overdue
    assert len(rows) == mid.overdue_count == len({(r["Đơn vị"], r["Huyện"]) for r in rows}) > 0
    levels = [int(r["Đôn đốc"]) for r in rows]
    assert levels == sorted(levels, reverse=True)
    so_y_te = next(r for r in rows if r["Đơn vị"] == "Sở Y tế")
    assert so_y_te == {"Đơn vị": "Sở Y tế", "Huyện": "—", "Tình trạng": "quá hạn, chưa báo cáo", "Đôn đốc": "2",
                       "Hạn": "09/12/2022 23:59",
                       "Bước": "Sở, ban, ngành tự đánh giá và báo cáo UBND tỉnh (qua Sở Nội vụ)"}
    communes = [r for r in rows if r["Đơn vị"].startswith("UBND xã")]
    assert communes and all(r["Huyện"].startswith(("huyện ", "thành phố ", "thị xã ")) for r in communes)
    # commune names repeat across districts: the units table tells them apart by district
    tan_viet = [r for r in mid.units if r["Đơn vị"] == "UBND xã Tân Việt"]
    assert len(tan_viet) > 1 and len({r["Huyện"] for r in tan_viet}) == len(tan_viet)
    assert views["start"].overdue[0]["Đơn vị"] == "Không có đơn vị quá hạn"


def test_districts_show_their_communes_progress(year):
    _, _, views = year
    rows = views["end"].districts
    assert len(rows) == 12
    assert sum(int(r["Cấp xã báo cáo"].split("/")[1]) for r in rows) == 235
    first = views["start"].districts[0]
    assert first["Cấp xã báo cáo"].startswith("0/") and first["Huyện tự đánh giá"] == "chưa đến bước báo cáo"


def test_a_failed_letter_comes_with_the_pick_that_resends_it(year):
    engine, root, _ = year
    with engine.db.begin() as conn:
        ids = [r.id for r in conn.execute(store.outbox.select().where(
            store.outbox.c.instance_id.in_(store.tree_ids(conn, root)), store.outbox.c.kind == "escalation-1")
            .order_by(store.outbox.c.id).limit(2))]
        conn.execute(update(store.outbox).where(store.outbox.c.id.in_(ids))
                     .values(status="failed", last_error="550 5.1.1 mailbox unavailable"))
    rows = instance_progress(engine, root, engine.instance(root).ended_at).stalled
    whole, *letters = rows
    assert whole["Loại"] == "Thư không gửi được" and whole["Đơn vị"] == "2 đơn vị"
    assert "retrigger-step" in whole["Cách xử lý"] and "Đơn vị để trống (cả bước)" in whole["Cách xử lý"]
    assert len(letters) == 2
    for row in letters:
        assert "Thư đôn đốc cấp 1: 550" in row["Chi tiết"]
        assert f"({row['Bước']}" not in row["Cách xử lý"]  # the step by its name and id, as the list offers it
        assert "_self_evaluation)»" in row["Cách xử lý"] and f"Đơn vị «{row['Đơn vị']}" in row["Cách xử lý"]


def test_operator_actions_say_who_what_why_when(year):
    _, _, views = year
    assert views["start"].actions[0]["Việc"] == "Chưa có thao tác nào"
    reviews = [r for r in views["end"].actions if r["Việc"].startswith("Ý kiến thẩm định")]
    assert [r["Việc"] for r in reviews] == ["Ý kiến thẩm định: Trả lại, đề nghị bổ sung",
                                            "Ý kiến thẩm định: Thống nhất"]  # the form's words
    # between them, Sở Nội vụ completed the returned report
    assert [r["Lúc"] for r in views["end"].actions if r["Việc"] == "Sở Nội vụ bổ sung, hoàn thiện báo cáo"] == [
        "22/12/2022 09:00"]
    assert reviews[0]["Lúc"] == "20/12/2022 09:00" and reviews[0]["Lý do / ý kiến"].startswith("Bổ sung")


def test_artifact_keys_carry_the_plan_and_the_year():
    """Two plans on one server, two years of one plan: each instance's artifacts have keys of
    their own, as Prefect takes them (lower-case letters, digits, dashes)."""
    import re

    from planflow.flows.artifacts import artifact_key

    instances = ("hai-duong-dan-van-2022/2022", "thu-nghiem-dan-van-2022/2022", "hai-phong-dan-van/2026",
                 "hai-phong-dan-van/2027")
    keys = [artifact_key(key, "progress") for key in instances]
    assert keys[0] == "hai-duong-dan-van-2022-2022-progress" and keys[3] == "hai-phong-dan-van-2027-progress"
    assert len(set(keys)) == len(keys) and all(re.fullmatch(r"[a-z0-9-]+", k) for k in keys)
