"""Tests of notifications/: templates, filters, template checks and delivery channels."""

from __future__ import annotations

import copy
import email
import email.policy
import subprocess
import sys
import unicodedata
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.smtp import Mailbox, free_port
from planflow.notifications.template_cache import KeptTemplates, compiled_templates
from planflow.notifications import (
    KINDS,
    SAMPLE_CONTEXTS,
    DeliveryError,
    FileChannel,
    Message,
    SmtpChannel,
    TemplateError,
    build_email,
    message_id_for,
    check_template,
    render,
    safe_key,
    vn_date,
    vn_datetime,
)

REPO = Path(__file__).resolve().parents[1]
SENDER = "Sở Nội vụ tỉnh Hải Dương <so-noi-vu@haiduong.example>"


def sample(kind: str) -> dict:
    return copy.deepcopy(SAMPLE_CONTEXTS[kind])


# --- filters -------------------------------------------------------------------------


def test_vn_date_zero_pads_day_and_months_1_2_as_in_nd_30():
    assert vn_date(date(2022, 12, 9)) == "ngày 09 tháng 12 năm 2022"
    assert vn_date(date(2022, 3, 2)) == "ngày 02 tháng 3 năm 2022"
    assert vn_date(date(2022, 2, 15)) == "ngày 15 tháng 02 năm 2022"
    assert vn_date(date(2022, 1, 1)) == "ngày 01 tháng 01 năm 2022"
    assert vn_date(date(2022, 11, 26)) == "ngày 26 tháng 11 năm 2022"


def test_aware_datetimes_are_written_in_vietnam_time():
    utc_evening = datetime(2022, 12, 9, 20, 0, tzinfo=timezone.utc)  # 03:00 on 10/12 in Hà Nội
    assert vn_date(utc_evening) == "ngày 10 tháng 12 năm 2022"
    assert vn_datetime(datetime(2022, 12, 9, 10, 0, tzinfo=timezone.utc)) == (
        "17 giờ 00 ngày 09 tháng 12 năm 2022"
    )
    assert vn_datetime(date(2022, 12, 9)) == "ngày 09 tháng 12 năm 2022"


# --- rendering -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_its_sample_in_vietnamese(kind):
    message = render(kind, sample(kind))
    assert isinstance(message, Message) and message.kind == kind
    assert message.subject and "\n" not in message.subject
    for part in (message.subject, message.text, message.html):
        assert "{{" not in part and "{%" not in part and "}}" not in part
        assert unicodedata.is_normalized("NFC", part)
    for body in (message.text, message.html):
        assert "Kính gửi" in body
        assert "Trân trọng." in body
        assert "Sở Nội vụ" in body or "Ban Dân vận" in body
        assert "Kế hoạch số …/KH-UBND" in body
        assert "UBND tỉnh Hải Dương" in body
    assert message.html.lstrip().startswith("<!DOCTYPE html>")
    assert '<html lang="vi">' in message.html


@pytest.mark.parametrize("kind", KINDS)
def test_package_templates_pass_their_own_check(kind):
    assert check_template(kind) == []


def test_dissemination_carries_the_plan():
    ctx = sample("dissemination")
    message = render("dissemination", ctx)
    for task in ctx["plan"]["tasks"]:
        assert task in message.text
    assert "17 giờ 00 ngày 09 tháng 12 năm 2022" in message.text
    assert "KT. CHỦ TỊCH" in message.text and "Nguyễn Minh Hùng" in message.text
    assert "- Thường trực Tỉnh ủy;" in message.text
    assert "- Lưu: VT, KGVX." in message.text
    assert "Chỉ thị số 33/CT-TTg ngày 26/11/2021" in message.text


def test_plan_number_and_date_when_known():
    ctx = sample("reminder")
    ctx["plan"]["number"] = "1234/KH-UBND"
    ctx["plan"]["issued_on"] = date(2022, 3, 2)
    message = render("reminder", ctx)
    assert "Kế hoạch số 1234/KH-UBND ngày 02 tháng 3 năm 2022 của UBND tỉnh Hải Dương" in message.text
    ctx["plan"]["number"] = 1234
    assert "Kế hoạch số 1234/KH-UBND" in render("reminder", ctx).html


def test_reminder_on_the_last_day_and_overdue_wording():
    ctx = sample("reminder")
    ctx["working_days_left"] = 0
    assert "Hôm nay là ngày cuối cùng của thời hạn" in render("reminder", ctx).text
    overdue = render("overdue", sample("overdue"))
    assert "khẩn trương" in overdue.text
    assert "quá thời hạn 1 ngày làm việc" in overdue.text
    assert overdue.subject.startswith("Đôn đốc lần 1: Sở Tư pháp")


def test_escalations_list_every_late_unit():
    for kind in ("escalation-1", "escalation-2", "escalation-final"):
        ctx = sample(kind)
        message = render(kind, ctx)
        for unit in ctx["units"]:
            assert unit["name"] in message.text and unit["name"] in message.html
    assert "không đủ điều kiện xếp loại" in render("escalation-final", sample("escalation-final")).text


def test_review_result_both_decisions():
    ctx = sample("review-result")
    returned = render("review-result", ctx)
    assert returned.subject.startswith("Đề nghị chỉnh sửa")
    assert ctx["comment"] in returned.text
    ctx.update(decision="approve", comment=None, round=2)
    approved = render("review-result", ctx)
    assert approved.subject.startswith("Thống nhất")
    assert "(lần 2)" in approved.subject


def test_publication_scores_use_decimal_comma_and_dash_for_none():
    message = render("publication", sample("publication"))
    assert "95,5 điểm" in message.text
    assert "UBND thị xã Kinh Môn: không có điểm, xếp loại: Không đủ điều kiện xếp loại" in message.text
    assert "<td style=\"border:1px solid #999; padding:4px 8px; text-align:center;\">—</td>" in message.html


def test_html_escapes_unit_names_but_text_keeps_them():
    ctx = sample("reminder")
    ctx["unit"]["name"] = "Sở <b>Thử nghiệm</b> & Co"
    ctx["recipient"]["head"] = "Giám đốc Sở <b>Thử nghiệm</b>"  # printed through a macro
    ctx["plan"]["title"] = "Kế hoạch <script>alert(1)</script>"  # likewise
    message = render("reminder", ctx)
    assert "<b>" not in message.html and "<script>" not in message.html
    assert "Sở &lt;b&gt;Thử nghiệm&lt;/b&gt; &amp; Co" in message.html
    assert "Giám đốc Sở &lt;b&gt;Thử nghiệm&lt;/b&gt;" in message.html
    assert "&lt;script&gt;" in message.html
    assert "Sở <b>Thử nghiệm</b> & Co" in message.text
    assert "Sở <b>Thử nghiệm</b> & Co" in message.subject


@pytest.mark.parametrize("kind", ["escalation-1", "escalation-2", "escalation-final", "publication"])
def test_html_escapes_names_in_tables(kind):
    ctx = sample(kind)
    rows = ctx["units"] if "units" in ctx else ctx["results"]
    rows[0]["name"] = "UBND <i>xã</i>"
    html = render(kind, ctx).html
    assert "<i>" not in html and "UBND &lt;i&gt;xã&lt;/i&gt;" in html


def test_text_and_html_share_the_same_macros():
    templates = REPO / "notifications" / "templates"

    def one_line_macros(name):
        text = (templates / name).read_text(encoding="utf-8")
        return [line for line in text.splitlines() if line.startswith("{% macro") and "endmacro" in line]

    assert one_line_macros("_common.txt.j2") == one_line_macros("_common.html.j2")


def test_unknown_kind_names_the_known_kinds():
    with pytest.raises(TemplateError) as info:
        render("thong-bao-la", sample("reminder"))
    assert "thong-bao-la" in str(info.value)
    for kind in KINDS:
        assert kind in str(info.value)
    with pytest.raises(TemplateError):
        check_template("thong-bao-la")


def test_missing_context_key_is_a_located_template_error():
    ctx = sample("reminder")
    del ctx["unit"]["name"]
    with pytest.raises(TemplateError) as info:
        render("reminder", ctx)
    problem = info.value.problems[0]
    assert problem.template == "reminder.subject.j2" and problem.line == 1
    assert "'unit' has no key or attribute 'name'" in problem.message
    assert "code, email, head" in problem.message


# --- check_template ------------------------------------------------------------------


def test_check_template_names_file_line_and_variable(tmp_path):
    (tmp_path / "reminder.txt.j2").write_text(
        '{% extends "_layout.txt.j2" %}\n'
        "{% block body %}\n"
        "Đề nghị {{ unti.name }} khẩn trương hoàn thành.\n"
        "{% endblock %}\n",
        encoding="utf-8",
    )
    problems = check_template("reminder", template_dir=tmp_path)
    assert len(problems) == 1
    problem = problems[0]
    assert problem.template == "reminder.txt.j2"
    assert problem.line == 3
    assert "'unti' is undefined" in problem.message
    assert "unit" in problem.message.split("are:")[1]  # the variables that do exist
    assert "Traceback" not in str(problem)
    # the package's own reminder templates are untouched
    assert check_template("reminder") == []


def test_check_template_reports_syntax_errors_and_bad_attributes(tmp_path):
    (tmp_path / "overdue.subject.j2").write_text("Đôn đốc {{ unit.name \n", encoding="utf-8")
    (tmp_path / "overdue.txt.j2").write_text(
        "Kính gửi: {{ recipient.name }}.\n\n{{ unit.nam }}\n", encoding="utf-8"
    )
    (tmp_path / "overdue.html.j2").write_text("<p>{{ due|vn_datee }}</p>\n", encoding="utf-8")
    problems = {p.template: p for p in check_template("overdue", template_dir=tmp_path)}
    assert set(problems) == {"overdue.subject.j2", "overdue.txt.j2", "overdue.html.j2"}
    assert problems["overdue.subject.j2"].line == 1
    assert problems["overdue.subject.j2"].message.startswith("syntax error")
    assert problems["overdue.txt.j2"].line == 3
    assert "'unit' has no key or attribute 'nam'" in problems["overdue.txt.j2"].message
    assert problems["overdue.html.j2"].line == 1
    assert "vn_datee" in problems["overdue.html.j2"].message
    assert "vn_date" in problems["overdue.html.j2"].message.split("are:")[1]


def test_template_dir_overrides_only_the_files_it_has(tmp_path):
    (tmp_path / "reminder.subject.j2").write_text("Nhắc việc: {{ unit.name }}\n", encoding="utf-8")
    message = render("reminder", sample("reminder"), template_dir=tmp_path)
    assert message.subject == "Nhắc việc: UBND huyện Thanh Miện"
    assert "Kính gửi" in message.text  # package txt template still used
    assert check_template("reminder", template_dir=tmp_path) == []
    with pytest.raises(TemplateError, match="not a directory"):
        render("reminder", sample("reminder"), template_dir=tmp_path / "missing")


def test_templates_compiled_by_another_process_are_reused_and_an_edit_is_seen(tmp_path):
    """A worker's flow runs are each a new process: the compiled templates are kept on disk
    for the next one, and a template edited since is compiled afresh, not served stale."""
    template = tmp_path / "reminder.subject.j2"
    template.write_text("Nhắc việc: {{ unit.name }}\n", encoding="utf-8")
    run = [sys.executable, "-c", "import sys; from planflow.notifications import render; "
           "from planflow.notifications._samples import SAMPLE_CONTEXTS as S; "
           "print(render('reminder', S['reminder'], template_dir=sys.argv[1]).subject)", str(tmp_path)]
    first = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    cache = Path(compiled_templates("letters").directory)
    kept = {p.name: p.stat().st_mtime_ns for p in cache.glob("__planflow-letters-*.cache")}
    assert first.strip() == "Nhắc việc: UBND huyện Thanh Miện" and kept
    again = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert again == first
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("__planflow-letters-*.cache") if p.name in kept} == kept
    template.write_text("Đề nghị báo cáo: {{ unit.name }}\n", encoding="utf-8")
    edited = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert edited.strip() == "Đề nghị báo cáo: UBND huyện Thanh Miện"


def test_a_cache_that_cannot_be_written_or_read_never_stops_a_letter(tmp_path):
    """A full disk or a damaged cache file costs a compile, not the letter."""
    import jinja2
    from jinja2.bccache import bc_magic

    (tmp_path / "t.j2").write_text("Kính gửi: {{ name }}", encoding="utf-8")
    gone = KeptTemplates(str(tmp_path / "no-such-folder"))  # every write fails
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(tmp_path)), bytecode_cache=gone)
    assert env.get_template("t.j2").render(name="Sở Tư pháp") == "Kính gửi: Sở Tư pháp"
    cache = tmp_path / "cache"
    cache.mkdir()
    kept = KeptTemplates(str(cache))
    jinja2.Environment(loader=jinja2.FileSystemLoader(str(tmp_path)), bytecode_cache=kept).get_template("t.j2")
    [entry] = cache.iterdir()
    entry.write_bytes(entry.read_bytes()[:len(bc_magic) + 3])  # damaged: cut inside its checksum
    again = jinja2.Environment(loader=jinja2.FileSystemLoader(str(tmp_path)), bytecode_cache=kept)
    assert again.get_template("t.j2").render(name="UBND xã An Lâm") == "Kính gửi: UBND xã An Lâm"


# --- e-mail --------------------------------------------------------------------------


def _email(kind: str = "reminder", message_id: str = "run-1/reminder/ubnd-huyen-thanh-mien"):
    message = render(kind, sample(kind))
    mail = build_email(
        message,
        sender=SENDER,
        to=["ubnd-huyen-thanh-mien@haiduong.example"],
        message_id=message_id,
        date=datetime(2022, 12, 7, 1, 0, tzinfo=timezone.utc),
    )
    return message, mail


def test_build_email_is_multipart_alternative_with_encoded_headers():
    message, mail = _email()
    raw = mail.as_bytes()
    raw.decode("ascii")  # RFC 2047 headers and quoted-printable bodies: 7-bit clean
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["Subject"] == message.subject
    assert parsed["From"].addresses[0].display_name == "Sở Nội vụ tỉnh Hải Dương"
    assert parsed["Message-ID"] == message_id_for("run-1/reminder/ubnd-huyen-thanh-mien")
    assert message_id_for("run-1/reminder/x") != message_id_for("run-1/reminder/y")
    plain = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert plain.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    assert plain.get_content().replace("\r\n", "\n") == message.text
    assert html.get_content().replace("\r\n", "\n") == message.html


def test_safe_key_is_one_to_one_and_safe():
    assert safe_key("run-1.reminder_x") == "run-1.reminder_x"
    keys = ["a/b", "a%2Fb", "a b", "../x", "x..y", ".x", "x.", "ý"]
    safes = [safe_key(k) for k in keys]
    assert len(set(safes)) == len(keys)
    for s in safes:
        assert "/" not in s and " " not in s and not s.startswith(".") and ".." not in s
    assert len(safe_key("k" * 1000)) <= 180
    assert safe_key("k" * 1000) != safe_key("k" * 999)
    with pytest.raises(ValueError):
        safe_key("")


def test_file_channel_writes_one_file_per_key(tmp_path):
    channel = FileChannel(tmp_path / "outbox")
    message, mail = _email()
    first = channel.deliver(mail, "run-1/reminder/ubnd-huyen-thanh-mien")
    second = channel.deliver(mail, "run-1/reminder/ubnd-huyen-thanh-mien")
    assert first == second and first.parent == tmp_path / "outbox"
    _, other = _email("overdue", "run-1/overdue/so-tu-phap")
    channel.deliver(other, "run-1/overdue/so-tu-phap")
    channel.deliver(other, "../../escape attempt")
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert len(files) == 3 and all(name.endswith(".eml") for name in files)
    assert not list(tmp_path.glob("*.eml"))  # nothing written outside the directory
    parsed = email.message_from_bytes(first.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == message.subject
    assert parsed["Subject"].startswith("Nhắc thời hạn: UBND huyện Thanh Miện")


# --- SMTP against a real local server ------------------------------------------------




@pytest.fixture
def smtp_server():
    handler = Mailbox(refuse=("khong-ton-tai@haiduong.example",))
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def test_smtp_delivers_vietnamese_mail(smtp_server):
    controller, handler = smtp_server
    channel = SmtpChannel(controller.hostname, controller.port, security="none", timeout=5)
    message, mail = _email()
    refused = channel.deliver(mail, "run-1/reminder/ubnd-huyen-thanh-mien")
    assert refused == {}
    assert len(handler.envelopes) == 1
    envelope = handler.envelopes[0]
    assert envelope.rcpt_tos == ["ubnd-huyen-thanh-mien@haiduong.example"]
    received = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert received["Subject"] == message.subject
    assert received["Message-ID"] == mail["Message-ID"]
    text = received.get_body(preferencelist=("plain",)).get_content()
    assert "Kính gửi" in text
    assert "Kính gửi: Chủ tịch UBND huyện Thanh Miện." in text
    assert "Ban Dân vận" not in received.get_body(preferencelist=("html",)).get_content()


def test_smtp_all_recipients_refused_is_permanent(smtp_server):
    controller, handler = smtp_server
    channel = SmtpChannel(controller.hostname, controller.port, security="none", timeout=5)
    message = render("overdue", sample("overdue"))
    mail = build_email(
        message, sender=SENDER, to=["khong-ton-tai@haiduong.example"],
        message_id="run-1/overdue/x", date=datetime(2022, 12, 12, 1, 0, tzinfo=timezone.utc),
    )
    with pytest.raises(DeliveryError) as info:
        channel.deliver(mail, "run-1/overdue/x")
    assert info.value.permanent is True
    assert "550" in str(info.value) and "mailbox unavailable" in str(info.value)
    assert handler.envelopes == []


def test_smtp_partly_refused_returns_the_refused(smtp_server):
    controller, handler = smtp_server
    channel = SmtpChannel(controller.hostname, controller.port, security="none", timeout=5)
    message = render("overdue", sample("overdue"))
    mail = build_email(
        message, sender=SENDER,
        to=["so-tu-phap@haiduong.example", "khong-ton-tai@haiduong.example"],
        message_id="run-1/overdue/y", date=datetime(2022, 12, 12, 1, 0, tzinfo=timezone.utc),
    )
    refused = channel.deliver(mail, "run-1/overdue/y")
    assert list(refused) == ["khong-ton-tai@haiduong.example"]
    assert refused["khong-ton-tai@haiduong.example"][0] == 550
    assert handler.envelopes[0].rcpt_tos == ["so-tu-phap@haiduong.example"]


def test_smtp_nothing_listening_is_temporary():
    channel = SmtpChannel("127.0.0.1", free_port(), security="none", timeout=5)
    _, mail = _email()
    with pytest.raises(DeliveryError) as info:
        channel.deliver(mail, "run-1/reminder/ubnd-huyen-thanh-mien")
    assert info.value.permanent is False


def test_smtp_settings_from_env_hide_the_password():
    channel = SmtpChannel.from_env(
        environ={
            "PLANFLOW_SMTP_HOST": "mail.haiduong.example",
            "PLANFLOW_SMTP_SECURITY": "ssl",
            "PLANFLOW_SMTP_USER": "planflow",
            "PLANFLOW_SMTP_PASSWORD": "mat-khau-bi-mat",
        }
    )
    assert (channel.host, channel.port, channel.security, channel.user) == (
        "mail.haiduong.example", 465, "ssl", "planflow",
    )
    assert "mat-khau-bi-mat" not in repr(channel)
    assert "***" in repr(channel)
    assert SmtpChannel.from_env(environ={"PLANFLOW_SMTP_HOST": "h"}).port == 587
    with pytest.raises(ValueError, match="PLANFLOW_SMTP_HOST"):
        SmtpChannel.from_env(environ={})
    with pytest.raises(ValueError, match="SECURITY"):
        SmtpChannel.from_env(environ={"PLANFLOW_SMTP_HOST": "h", "PLANFLOW_SMTP_SECURITY": "tls"})


def test_smtp_login_without_tls_is_refused_unless_allowed_explicitly(smtp_server, caplog):
    """A password sent over a connection without TLS can be read on the way: refused, unless
    the operator says so (PLANFLOW_SMTP_ALLOW_PLAINTEXT_LOGIN=1), and then logged."""
    env = {"PLANFLOW_SMTP_HOST": "mail.haiduong.example", "PLANFLOW_SMTP_SECURITY": "none",
           "PLANFLOW_SMTP_USER": "planflow", "PLANFLOW_SMTP_PASSWORD": "mat-khau-bi-mat"}
    with pytest.raises(ValueError, match="PLANFLOW_SMTP_ALLOW_PLAINTEXT_LOGIN=1") as info:
        SmtpChannel.from_env(environ=env)
    assert "mat-khau-bi-mat" not in str(info.value) and "in clear" in str(info.value)
    with pytest.raises(ValueError, match="without TLS"):
        SmtpChannel("127.0.0.1", 25, security="none", user="planflow", password="x")
    with pytest.raises(ValueError, match="ALLOW_PLAINTEXT_LOGIN must be 1 or 0"):
        SmtpChannel.from_env(environ={**env, "PLANFLOW_SMTP_ALLOW_PLAINTEXT_LOGIN": "maybe"})
    # no login, or TLS: nothing to refuse
    assert SmtpChannel.from_env(environ={**env, "PLANFLOW_SMTP_USER": "", "PLANFLOW_SMTP_PASSWORD": ""}).user is None
    assert SmtpChannel.from_env(environ={**env, "PLANFLOW_SMTP_SECURITY": "starttls"}).user == "planflow"
    allowed = SmtpChannel.from_env(environ={**env, "PLANFLOW_SMTP_ALLOW_PLAINTEXT_LOGIN": "1"})
    assert allowed.user == "planflow" and "mat-khau-bi-mat" not in repr(allowed)


def test_smtp_channel_keeps_one_connection_for_a_batch(smtp_server):
    controller, handler = smtp_server
    peers = []

    async def handle_EHLO(server, session, envelope, hostname, responses):
        session.host_name = hostname
        peers.append(session.peer)
        return responses

    handler.handle_EHLO = handle_EHLO
    channel = SmtpChannel(controller.hostname, controller.port, security="none", timeout=5)
    _, mail = _email()
    with channel:
        for i in range(5):
            channel.deliver(mail, f"run-1/reminder/{i}")
    assert len(handler.envelopes) == 5 and len(set(peers)) == 1 and channel.connections == 1
    channel.deliver(mail, "run-1/reminder/alone")  # outside a batch: its own connection, closed after
    assert len(set(peers)) == 2 and channel.connections == 2


def test_a_batch_stops_knocking_at_a_server_that_cannot_be_reached():
    channel = SmtpChannel("127.0.0.1", free_port(), security="none", timeout=5)
    _, mail = _email()
    errors = []
    with channel:
        for i in range(3):
            with pytest.raises(DeliveryError) as info:
                channel.deliver(mail, f"run-1/reminder/{i}")
            errors.append(info.value)
    assert channel.connections == 0 and all(not e.permanent for e in errors)
    assert "refused the connection" in str(errors[0])
    assert str(errors[1]) == f"not sent: {errors[0]}; not tried again in this delivery run"


def test_notifications_import_neither_prefect_nor_sqlalchemy():
    code = (
        "import sys, notifications, notifications.channels, notifications.render;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('prefect', 'sqlalchemy')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_a_filter_given_an_undefined_value_fails_as_jinja2_does():
    import jinja2

    from planflow.notifications._filters import FILTERS

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters.update(FILTERS)
    for name in FILTERS:
        with pytest.raises(jinja2.UndefinedError, match="^'missing' is undefined$"):
            env.from_string("{{ missing|%s }}" % name).render()
