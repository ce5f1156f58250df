"""The units' portal over HTTP (FastAPI's TestClient, no server): a unit's personal link
opens its task, its report goes through the engine at the server's time, and hostile input
gets nothing — a tampered, revoked or closed link, another unit's link, a missing CSRF
value, an oversized or foreign file, a score above the maximum. Each refusal is counted in
the store: nothing written. The shipped 2022 plan runs as a replay; the portal's clock is
set inside (or after) the communes' window. SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from planflow import outbox
from planflow import store as s
from planflow.notifications import render
from planflow.portal.app import PortalConfigError, create_app
from planflow.simulation import EngineActions
from planflow.unit_links import reissue

from tests.portal_site import COMMUNE, DISTRICT, KEY, NEIGHBOUR, PDF, PLAN, SECRET, Site, text_of


@pytest.fixture
def site(plan, db_url, tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # no Prefect server: the event is logged as not sent
    return Site(plan, db_url, tmp_path / "files")


def test_a_unit_sees_its_task_and_its_report_is_recorded_at_the_servers_time(site):
    path = site.link()
    page = site.client.get(path)
    assert page.status_code == 200
    shown = text_of(page)
    assert "Đơn vị: UBND phường Cẩm Thượng" in shown
    assert "UBND cấp xã tự đánh giá, báo cáo UBND cấp huyện" in shown
    assert "Hạn báo cáo: trước 23:59:59 ngày 02/12/2022" in shown
    assert "ngày làm việc" in shown
    for code, item in site.plan.forms["self-evaluation"].items.items():
        assert f"{code}. {item.title}" in shown
        if not item.auto_from_workflow:
            assert re.search(rf'name="score-{re.escape(code)}"[^>]* min="0" max="{item.max:g}" step="0.25"', page.text)
    assert len(page.content) < 200_000 and 'type="file"' in page.text
    for header, value in (("x-frame-options", "DENY"), ("x-content-type-options", "nosniff"),
                          ("referrer-policy", "no-referrer"), ("cache-control", "no-store")):
        assert page.headers[header] == value
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", page.headers["content-security-policy"]).group(1)
    assert f'<script nonce="{nonce}">' in page.text and f'<style nonce="{nonce}">' in page.text

    name = "<img src=x onerror=alert('x')>.pdf"
    site.now = site.now.replace(hour=14, minute=5, second=9)  # the server's clock when the report comes in
    receipt = site.post(path, site.form(path) | site.scores(g1_1="4,5") | {"notes": "Đã triển khai <b>đủ</b>"},
                        (name, PDF, "application/pdf"))
    assert receipt.status_code == 200, receipt.text
    shown = text_of(receipt)
    digest = hashlib.sha256(PDF).hexdigest()
    assert "Số tiếp nhận: 2022-" in shown and "14:05:09 ngày 20/11/2022" in shown and digest in shown
    assert "Tổng điểm: 99,5" in shown
    assert "<img src=x" not in receipt.text and "&lt;img src=x onerror=" in receipt.text
    assert (site.files / f"{digest}.pdf").read_bytes() == PDF
    with site.db.connect() as conn:
        row = conn.execute(select(s.submissions).where(s.submissions.c.unit_code == COMMUNE)).one()
        actor = conn.scalar(select(s.audit.c.actor).where(s.audit.c.action == "task.submitted"))
    assert row.submitted_at == row.recorded_at == site.now and row.total == 99.5
    assert row.payload["scores"]["g1.1"] == 4.5 and row.payload["notes"] == "Đã triển khai <b>đủ</b>"
    assert row.payload["file"] == {"sha256": digest, "name": name, "size": len(PDF), "type": "pdf"}
    assert actor == f"unit:{COMMUNE} (đường dẫn cá nhân)"
    with site.db.connect() as conn:  # the receipt letter, queued with the report
        letter = conn.execute(select(s.outbox).where(s.outbox.c.kind == "receipt")).one()
    context = outbox.render_context(site.plan, letter)
    assert (letter.recipient, context["receipt"]["file"]["sha256"], context["total"]) == (COMMUNE, digest, 99.5)
    message = render("receipt", context)
    number = re.search(r"Số tiếp nhận: (\S+)", text_of(receipt)).group(1)
    assert f"(số tiếp nhận {number})" in message.subject and "UBND phường Cẩm Thượng" in message.subject
    assert "lúc 14 giờ 05 ngày 20 tháng 11 năm 2022" in message.text and "99,5 điểm" in message.text and digest in message.text
    assert "&lt;img src=x" in message.html and "<img src=x" not in message.html

    again = site.client.get(path)  # the unit opens its link again: what it sent, no form
    shown = text_of(again)
    assert again.status_code == 200 and "Đơn vị đã gửi báo cáo" in shown and 'type="file"' not in again.text
    assert f"Số tiếp nhận: {number}" in shown  # the same number each time
    assert "14:05:09 ngày 20/11/2022" in shown and "4,5 / 5" in shown
    before = site.counts()
    twice = site.post(path, {"csrf": "x"} | site.scores())
    assert twice.status_code == 409 and site.counts() == before


def test_a_token_changed_by_one_character_is_refused(site):
    path = site.link()
    csrf = site.form(path)
    before = site.counts()
    i = len(path) - 5
    tampered = path[:i] + ("A" if path[i] != "A" else "B") + path[i + 1:]
    for response in (site.client.get(tampered), site.post(tampered, csrf | site.scores())):
        assert response.status_code == 403 and "Đường dẫn không hợp lệ" in text_of(response)
    assert site.client.get("/u/not-a-link").status_code == 403
    assert site.counts() == before


def test_a_unit_reports_only_for_itself(site):
    """The unit comes from the token: the neighbour's link records the neighbour, whatever
    the form says, and a form of one link does not pass on another (CSRF bound to the token)."""
    mine, theirs = site.link(COMMUNE), site.link(NEIGHBOUR)
    csrf_mine = site.form(mine)
    before = site.counts()
    refused = site.post(theirs, csrf_mine | site.scores() | {"unit": COMMUNE})
    assert refused.status_code == 403 and site.counts() == before
    sent = site.post(theirs, site.form(theirs) | site.scores() | {"unit": COMMUNE, "unit_code": COMMUNE})
    assert sent.status_code == 200 and "UBND phường Bình Hàn" in text_of(sent)
    with site.db.connect() as conn:
        assert conn.scalars(select(s.submissions.c.unit_code)).all() == [NEIGHBOUR]
    assert "Gửi báo cáo" in site.client.get(mine).text  # this unit's task is still open


def test_a_revoked_link_is_gone_and_the_new_one_works(site):
    old = site.link()
    csrf = site.form(old)
    reissue(site.db, site.root, COMMUNE, actor="Nguyễn Văn A", reason="thư bị chuyển nhầm", as_of=site.now)
    before = site.counts()
    for response in (site.client.get(old), site.post(old, csrf | site.scores())):
        assert response.status_code == 410 and "Đường dẫn đã bị thu hồi" in text_of(response)
    assert site.counts() == before
    new = site.link()
    assert new != old and site.client.get(new).status_code == 200


def test_a_closed_task_is_gone(site):
    path = site.link()
    csrf = site.form(path)
    closed = dt.datetime(2022, 12, 7, 9, tzinfo=site.plan.calendar.tz)  # communes close 07/12 08:00
    site.engine.fire_timers(closed, root_id=site.root)
    EngineActions(site.engine, site.root).drain(closed)
    site.now = closed + dt.timedelta(days=1)
    before = site.counts()
    for response in (site.client.get(path), site.post(path, csrf | site.scores())):
        assert response.status_code == 410 and "Đường dẫn đã hết hạn/đã đóng" in text_of(response)
    assert site.counts() == before


def test_a_task_not_open_yet_says_so_and_a_district_sees_its_communes(site):
    path = site.link(DISTRICT, "district_self_evaluation")  # opens once its communes are aggregated
    page = site.client.get(path)
    assert page.status_code == 200 and "Nhiệm vụ chưa mở" in text_of(page) and "<form" not in page.text
    communes = [u for u in site.plan.registry.group("communes") if u.parent == DISTRICT]
    assert f"Tiến độ báo cáo của cấp xã (0/{len(communes)} đã báo cáo)" in text_of(page)
    assert all(u.name in text_of(page) for u in communes)
    site.now = site.now.replace(hour=10)
    commune = site.link()
    assert site.post(commune, site.form(commune) | site.scores()).status_code == 200
    shown = text_of(site.client.get(path))
    assert f"(1/{len(communes)} đã báo cáo)" in shown
    assert "UBND phường Cẩm Thượng đã báo cáo đúng hạn 10:30:15 ngày 20/11/2022 100" in shown
    assert "UBND phường Bình Hàn đang thực hiện" in shown
    assert "Tiến độ báo cáo của cấp xã" not in text_of(site.client.get(commune))  # a commune has none
    before = site.counts()
    assert site.post(path, {"csrf": "x"} | site.scores()).status_code == 409
    assert site.counts() == before


def test_a_report_without_its_csrf_value_is_refused(site):
    path = site.link()
    csrf = site.form(path)
    before = site.counts()
    flipped = csrf["csrf"][:-1] + ("0" if csrf["csrf"][-1] != "0" else "1")
    for data in (site.scores(), {"csrf": ""} | site.scores(), {"csrf": flipped} | site.scores()):
        response = site.post(path, data)
        assert response.status_code == 403 and "Phiên làm việc không hợp lệ" in text_of(response)
    site.client.cookies.clear()  # the field of a page, without the cookie it was made for
    assert site.post(path, csrf | site.scores()).status_code == 403
    assert site.counts() == before


def test_files_that_are_too_big_or_not_a_report_are_refused(plan, db_url, tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PLANFLOW_PORTAL_MAX_UPLOAD", "4096")
    site = Site(plan, db_url, tmp_path / "files")
    path = site.link()
    csrf = site.form(path)
    before = site.counts()
    big = site.post(path, csrf | site.scores(), ("bao-cao.pdf", PDF + b"0" * 5000, "application/pdf"))
    assert big.status_code == 413 and "Tệp quá lớn: tối đa 4 KB" in text_of(big)
    huge = site.post(path, csrf | site.scores(), ("bao-cao.pdf", PDF + b"0" * 400_000, "application/pdf"))
    assert huge.status_code == 413 and "Tệp báo cáo tối đa 4 KB" in text_of(huge)  # by its length, unread
    not_docx = io.BytesIO()
    with zipfile.ZipFile(not_docx, "w") as z:
        z.writestr("hello.txt", "không phải Word")
    for file in (("bao-cao.pdf", b"<html>not a pdf</html>", "application/pdf"),
                 ("bao-cao.docx", not_docx.getvalue(), "application/octet-stream")):
        refused = site.post(path, csrf | site.scores(), file)
        assert refused.status_code == 415 and "phải là PDF hoặc DOCX" in text_of(refused)
    assert site.post(path, csrf | site.scores(), None).status_code == 400
    assert site.counts() == before
    docx = io.BytesIO()
    with zipfile.ZipFile(docx, "w") as z:
        z.writestr("word/document.xml", "<w:document/>")
    assert site.post(path, csrf | site.scores(), ("bao-cao.docx", docx.getvalue(), "application/zip")).status_code == 200
    assert [p.suffix for p in site.files.glob("*")] == [".docx"]


def test_a_score_outside_the_form_names_its_criterion(site):
    path = site.link()
    csrf = site.form(path)
    before = site.counts()
    above = site.post(path, csrf | site.scores(g2_2="4.5"))
    assert above.status_code == 400
    assert "Điểm của tiêu chí g2.2 (Gắn với học tập và làm theo tư tưởng, đạo đức, phong cách Hồ Chí Minh) " \
           "không hợp lệ: phải từ 0 đến 4" in text_of(above)
    assert 'value="4.5"' in above.text  # what the unit typed stays in the form
    for typed, words in (("0.3", "bội số của 0.25"), ("năm", "không phải là số"),
                         ("", "Chưa nhập điểm")):
        response = site.post(path, csrf | site.scores(g3_1=typed))
        assert response.status_code == 400 and words in text_of(response) and "g3.1" in text_of(response)
    assert site.counts() == before


def test_requests_per_link_are_limited(plan, db_url, tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    site = Site(plan, db_url, tmp_path / "files", rate_limit=3)
    path = site.link()
    assert [site.client.get(path).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert "Quá nhiều yêu cầu" in text_of(site.client.get(path))
    assert site.client.get(site.link(NEIGHBOUR)).status_code == 200  # another link is not held up


def test_the_portal_needs_a_secret(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from planflow.flows.cli import app

    with pytest.raises(PortalConfigError, match="PLANFLOW_PORTAL_SECRET"):
        create_app(PLAN, "sqlite://", "too-short", tmp_path)
    monkeypatch.setenv("PLANFLOW_PORTAL_SECRET", "short")  # under 32 characters: no secret
    result = CliRunner().invoke(app, ["portal", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 1 and "PLANFLOW_PORTAL_SECRET" in result.output


def test_odd_requests_get_a_vietnamese_page_with_the_headers(site):
    path = site.link()
    site.form(path)
    before = site.counts()
    missing = site.client.get("/khong-co")
    assert missing.status_code == 404 and "Không tìm thấy trang" in text_of(missing)
    assert missing.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in missing.headers[
        "content-security-policy"]
    broken = site.client.post(path, content=b"--x\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n",
                              headers={"content-type": "multipart/form-data; boundary=x"})
    assert broken.status_code in (400, 403) and "<h1>" in broken.text
    plain = site.client.post(path, data=site.scores())  # not multipart, no file, no CSRF value
    assert plain.status_code == 403
    assert site.counts() == before


def test_without_a_clock_of_its_own_the_portal_uses_the_instances_clock(plan, db_url, tmp_path, monkeypatch):
    """A replayed year's report is received at the replay clock (plan time), as every operator
    flow acts at it; a live year's at the real clock (``planflow.clock.now_of``)."""
    from planflow.clock import set_replay_clock

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    site = Site(plan, db_url, tmp_path / "files")
    at = dt.datetime(2022, 11, 25, 10, 15, tzinfo=plan.calendar.tz)
    set_replay_clock(site.engine, KEY, at, actor="so-noi-vu:kiem-thu", reason="kiểm thử cổng")
    client = TestClient(create_app(PLAN, db_url, SECRET, tmp_path / "files"))
    path = site.link()
    page = client.get(path)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    receipt = client.post(path, data={"csrf": csrf} | site.scores(), files={"file": ("bc.pdf", PDF, "application/pdf")})
    assert receipt.status_code == 200, receipt.text
    assert "10:15:00 ngày 25/11/2022" in text_of(receipt)
    with site.db.connect() as conn:
        assert conn.scalar(select(s.submissions.c.submitted_at).where(s.submissions.c.unit_code == COMMUNE)) == at
