"""The reviewer's link (Ban Dân vận Tỉnh ủy's, in the shipped plan): the review request
carries it; it opens the aggregate report and the decision form; a return is recorded with
its comment and the reviewer's name at the server's time, the report goes back to Sở Nội
vụ, and when the revised report comes back the same link opens the next round. Refusals
(no comment on a return, no name, a choice the form does not have) record nothing.
SQLite and PostgreSQL; the engine alone moves the plan, as the automation's run would.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from planflow import Submission
from planflow import store as s
from planflow.flows.delivery import PersonalLinks
from planflow.notifications import render
from planflow import outbox
from planflow.portal.links import read_link
from planflow.report import latest_markdown
from planflow.simulation import EngineActions
from tests.portal_site import KEY, SECRET, Site, text_of

REVIEWER = "ban-dan-van-tinh-uy"
PERSON = "Nguyễn Thị Hà"
COMMENT = "Đề nghị bổ sung số liệu <b>cấp xã</b> quá hạn."


@pytest.fixture
def site(plan, db_url, tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return Site(plan, db_url, tmp_path / "files")


def report_everything(site, at: dt.datetime) -> None:
    """Every unit asked reports on time with full marks, tier by tier, until nothing but the
    review waits (the engine moves the plan on between tiers)."""
    form = site.plan.forms["self-evaluation"]
    payload = {"scores": {c: i.max for c, i in form.items.items() if not i.auto_from_workflow}}
    actions = EngineActions(site.engine, site.root)
    for _ in range(5):
        actions.drain(at)
        open_items = [w for w in site.engine.open_work(site.root) if w.element_id != "review"]
        if not open_items:
            return
        site.engine.submit([Submission(w.unit_code, at, payload, w.element_id) for w in open_items], at,
                           root_id=site.root)
    raise AssertionError("the plan did not reach its review")


def open_elements(site) -> set[str]:
    return {w.element_id for w in site.engine.open_work(site.root)}


def decision(site, path: str, **fields) -> object:
    return site.client.post(path, data=site.form(path) | fields)


def test_the_reviewer_returns_the_report_by_name_and_the_next_round_opens(site):
    path = site.link(REVIEWER, "review")
    early = site.client.get(path)
    assert early.status_code == 200 and "Nhiệm vụ chưa mở" in text_of(early) and "<form" not in early.text

    at = dt.datetime(2022, 11, 21, 9, tzinfo=site.plan.calendar.tz)
    report_everything(site, at)
    assert open_elements(site) == {"review"}
    page = site.client.get(path)
    shown = text_of(page)
    assert page.status_code == 200 and "Ý kiến thẩm định" in shown and "Đơn vị: Ban Dân vận Tỉnh ủy" in shown
    assert "<table>" in page.text and "UBND huyện Thanh Miện" in shown  # the aggregate report, as HTML
    assert 'value="approve"' in page.text and "Thống nhất" in shown and "Trả lại, đề nghị bổ sung" in shown

    site.now = dt.datetime(2022, 12, 20, 9, 15, 30, tzinfo=site.plan.calendar.tz)
    before = site.counts()
    for fields, words in (({"decision": "return", "reviewer": PERSON}, "vui lòng ghi rõ ý kiến"),
                          ({"decision": "approve"}, "Chưa nhập họ và tên"),
                          ({"reviewer": PERSON}, "Chưa chọn kết luận"),
                          ({"decision": "xoa-bo", "reviewer": PERSON}, "không hợp lệ")):
        refused = decision(site, path, **fields)
        assert refused.status_code == 400 and words in text_of(refused), fields
    assert site.counts() == before

    sent = decision(site, path, decision="return", comment=COMMENT, reviewer=f"  {PERSON} ")
    shown = text_of(sent)
    assert sent.status_code == 200 and "Đã ghi nhận ý kiến" in shown
    assert f"Người cho ý kiến: {PERSON} (Ban Dân vận Tỉnh ủy)" in shown
    assert "Kết luận: Trả lại, đề nghị bổ sung" in shown and "09:15:30 ngày 20/12/2022" in shown
    assert "<b>cấp xã</b>" not in sent.text and "&lt;b&gt;cấp xã&lt;/b&gt;" in sent.text
    with site.db.connect() as conn:
        row = conn.execute(select(s.submissions).where(s.submissions.c.unit_code == REVIEWER)).one()
        actor = conn.scalar(select(s.audit.c.actor).where(s.audit.c.action == "task.submitted",
                                                          s.audit.c.unit_code == REVIEWER))
    assert row.payload == {"decision": "return", "comment": COMMENT} and row.submitted_at == site.now
    assert actor == f"{REVIEWER}:{PERSON}"

    EngineActions(site.engine, site.root).drain(site.now)  # as the automation's run does
    assert open_elements(site) == {"revise"}  # back to Sở Nội vụ
    assert "Đã gửi ý kiến" in text_of(site.client.get(path))
    revised = site.now + dt.timedelta(days=2)
    site.engine.submit([Submission("so-noi-vu", revised, {"note": "Đã bổ sung số liệu cấp xã"}, "revise",
                                   actor="so-noi-vu:Trần Văn Bình")], revised, root_id=site.root)
    EngineActions(site.engine, site.root).drain(revised)
    assert open_elements(site) == {"review"}
    second = text_of(site.client.get(path))
    assert "Ý kiến thẩm định (lần 2)" in second
    assert f"Lần 1 — {PERSON} (Ban Dân vận Tỉnh ủy), 20/12/2022 09:15" in second  # the report keeps round 1
    site.now = revised + dt.timedelta(days=1)
    approved = decision(site, path, decision="approve", reviewer="Lê Văn Cường")
    assert approved.status_code == 200 and "Kết luận: Thống nhất" in text_of(approved)
    EngineActions(site.engine, site.root).drain(site.now)
    assert "review" not in open_elements(site)
    markdown = latest_markdown(site.engine, site.root)
    assert "Lê Văn Cường (Ban Dân vận Tỉnh ủy)" in markdown
    assert "“Đề nghị bổ sung số liệu &lt;b&gt;cấp xã&lt;/b&gt; quá hạn.”" in markdown  # no markup in the report


def test_the_review_request_carries_the_reviewers_link(site):
    report_everything(site, dt.datetime(2022, 11, 21, 9, tzinfo=site.plan.calendar.tz))
    with site.db.connect() as conn:
        requests = conn.execute(select(s.outbox).where(s.outbox.c.kind == "review-request")).all()
        dissemination = conn.execute(select(s.outbox).where(s.outbox.c.kind == "dissemination",
                                                            s.outbox.c.recipient == REVIEWER)).all()
    links = PersonalLinks(site.engine, "https://baocao.example.vn/", SECRET)
    (request,) = requests
    link, purpose = links.for_row(request)
    assert read_link(SECRET, link.rsplit("/", 1)[1]) == read_link(SECRET, site.link(REVIEWER, "review")[3:])
    assert read_link(SECRET, link.rsplit("/", 1)[1]).key == KEY
    message = render("review-request", {**outbox.render_context(site.plan, request, site.db), "link": link,
                                        "link_purpose": purpose})
    assert f"Đường dẫn xem báo cáo và gửi ý kiến thẩm định: {link}" in message.text
    assert f'<a href="{link}">' in message.html
    assert all(links.for_row(row) is None for row in dissemination)  # no self-evaluation of its own
