"""A unit's personal link in its letters, and an operator reissuing it (issue 13).

The shipped plan's 2022 instance is started as a replay and what its start sends (the
plan to its recipients, each district's directive to its communes) is delivered into a
file channel, once with the portal configured (``PLANFLOW_PORTAL_URL`` and a secret) and
once without. Each letter is read as its recipient reads it: a unit asked to evaluate
itself finds its own link, whose token names the plan instance, the unit, its task and the
link's generation; a body with no task of its own finds none; without the portal no letter
carries a link. Then ``planflow links reissue`` revokes a commune's link and sends it a new
one, audited; a unit the plan does not know, or gives no task, is refused and nothing is
written.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from email.utils import parseaddr
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from planflow import Engine, connect, load_plan
from planflow import store as s
from planflow.portal.links import Claim, read_link
from planflow.simulation import first_start
from planflow.unit_links import generation
from tests.conftest import PLAN
from tests.test_letters import Delivering

KEY = "hai-duong-dan-van-2022/2022"
PORTAL = "https://baocao.haiduong.example/cong"
SECRET = "bi-mat-cua-cong-bao-cao-hai-duong-2022-khong-tiet-lo"
LINE = re.compile(r"Đường dẫn báo cáo của đơn vị: (\S+)")
COMMUNE = "ubnd-tp-hai-duong--phuong-cam-thuong"


def _letters(folder: Path) -> list[SimpleNamespace]:
    out = []
    for path in sorted(folder.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        parts = {p.get_content_type(): p.get_content() for p in msg.walk()
                 if p.get_content_type() in ("text/plain", "text/html")}
        out.append(SimpleNamespace(name=path.name, msg=msg, to=parseaddr(str(msg["To"]))[1],
                                   sender=parseaddr(str(msg["From"]))[1], subject=str(msg["Subject"]),
                                   kind=str(msg["X-Planflow-Kind"]),
                                   text=parts["text/plain"], html=parts["text/html"]))
    return out


def _start(tmp: Path, portal: bool) -> SimpleNamespace:
    """The 2022 instance started as a replay, its first letters delivered into ``tmp``/outbox."""
    from planflow.flows.runtime import RunRef

    plan = load_plan(PLAN)
    url = f"sqlite:///{tmp / 'planflow.db'}"
    engine = Engine(plan, connect(url))
    clock = first_start(plan)
    root = engine.start(KEY, clock, replay=True)
    ref = RunRef(definition=str(PLAN), db_url=url, root_key=KEY, outbox_dir=str(tmp / "outbox"))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PLANFLOW_SMTP_HOST", raising=False)
        if portal:
            mp.setenv("PLANFLOW_PORTAL_URL", PORTAL)
            mp.setenv("PLANFLOW_PORTAL_SECRET", SECRET)
        else:
            mp.delenv("PLANFLOW_PORTAL_URL", raising=False)
            mp.setenv("PLANFLOW_PORTAL_SECRET", "")
        asyncio.run(Delivering(engine, root, ref).drive(clock))
    by_email = {u.email: u for u in plan.registry.units if u.email}
    letters = _letters(tmp / "outbox")
    for letter in letters:
        letter.unit = by_email[letter.to]
    return SimpleNamespace(plan=plan, engine=engine, root=root, url=url, tmp=tmp, letters=letters)


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    return _start(tmp_path_factory.mktemp("links"), portal=True)


@pytest.fixture(scope="module")
def unlinked(tmp_path_factory):
    return _start(tmp_path_factory.mktemp("no-links"), portal=False)


def _claim(letter) -> Claim:
    (url,) = LINE.findall(letter.text)
    assert url.startswith(f"{PORTAL}/u/")
    assert f'href="{url}"' in letter.html  # the HTML part carries the same link, as a link
    return read_link(SECRET, url.rsplit("/u/", 1)[1])


def _dissemination_to(year, code: str):
    found = [x for x in year.letters if x.unit.code == code and x.kind == "dissemination"]
    assert found, f"no dissemination letter to {code}"
    return found[0]


def test_a_commune_finds_its_own_link_in_its_districts_letter(linked):
    commune = linked.plan.registry.get(COMMUNE)
    letter = _dissemination_to(linked, COMMUNE)
    district = linked.plan.registry.get(commune.parent)
    assert letter.sender == district.email  # the directive comes from its district
    assert _claim(letter) == Claim(KEY, COMMUNE, "commune_self_evaluation", 0)
    assert "riêng" in letter.text and "không chuyển tiếp" in letter.text


def test_departments_and_districts_find_their_own_tasks_links(linked):
    assert _claim(_dissemination_to(linked, "so-tu-phap")) == Claim(KEY, "so-tu-phap",
                                                                    "department_self_evaluation", 0)
    district = next(u for u in linked.plan.registry.group("districts"))
    assert _claim(_dissemination_to(linked, district.code)) == Claim(KEY, district.code,
                                                                    "district_self_evaluation", 0)


def test_every_unit_that_reports_has_its_link_and_no_other_body_has_one(linked):
    from planflow.expressions import units_that_report

    reporting = {u.code for u in units_that_report(linked.plan)}
    with_link = {x.unit.code for x in linked.letters if LINE.search(x.text)}
    without = {x.unit.code for x in linked.letters if not LINE.search(x.text)}
    assert without and "ban-dan-van-tinh-uy" in without and "thuong-truc-tinh-uy" in without
    assert with_link <= reporting and not (without & reporting)
    assert {c.unit for c in map(_claim, (x for x in linked.letters if LINE.search(x.text)))} == with_link
    assert all("/u/" not in x.text and "/u/" not in x.html for x in linked.letters if x.unit.code in without)


def test_the_store_never_holds_a_link(linked):
    with linked.engine.db.connect() as conn:
        contexts = [str(r.context) for r in conn.execute(select(s.outbox.c.context))]
    assert contexts and not any(PORTAL in c or "/u/" in c for c in contexts)


def test_without_a_portal_no_letter_carries_a_link(unlinked, linked):
    assert len(unlinked.letters) == len(linked.letters)
    assert not any("Đường dẫn" in x.text or "/u/" in x.text or "/u/" in x.html for x in unlinked.letters)


def _invoke(*args: str, portal: bool = True):
    from planflow.flows.cli import app

    env = {"PLANFLOW_PORTAL_URL": PORTAL if portal else "", "PLANFLOW_PORTAL_SECRET": SECRET if portal else "",
           "PLANFLOW_SMTP_HOST": ""}
    return CliRunner().invoke(app, ["links", "reissue", *args], env=env)


def _written(year) -> tuple:
    with year.engine.db.connect() as conn:
        counts = tuple(conn.scalar(select(func.count()).select_from(t)) for t in (s.audit, s.outbox, s.unit_links))
    return counts, sorted(p.name for p in (year.tmp / "outbox").glob("*.eml"))


def _reissue(year, unit: str, portal: bool = True):
    return _invoke(unit, "--definition", str(PLAN), "--year", "2022", "--db", year.url,
                   "--outbox", str(year.tmp / "outbox"), "--actor", "Nguyễn Thị Lan, chuyên viên Sở Nội vụ",
                   "--reason", "Thư điện tử của xã bị chuyển tiếp nhầm", portal=portal)


def test_reissuing_a_link_sends_the_unit_a_new_one_and_audits_who_and_why(linked):
    before = {x.name for x in linked.letters}
    result = _reissue(linked, COMMUNE)
    assert result.exit_code == 0, result.output
    new = [x for x in _letters(linked.tmp / "outbox") if x.name not in before]
    (letter,) = new
    commune = linked.plan.registry.get(COMMUNE)
    assert letter.to == commune.email and letter.subject == "Đường dẫn báo cáo mới của đơn vị"
    assert _claim(letter) == Claim(KEY, COMMUNE, "commune_self_evaluation", 1)
    assert "không còn sử dụng được" in letter.text and "UBND cấp xã tự đánh giá" in letter.text
    assert generation(linked.engine.db, linked.root, COMMUNE) == 1
    with linked.engine.db.connect() as conn:
        (entry,) = conn.execute(select(s.audit).where(s.audit.c.action == "link.reissued")).all()
    assert entry.actor == "Nguyễn Thị Lan, chuyên viên Sở Nội vụ" and entry.unit_code == COMMUNE
    assert entry.detail == {"generation": 1, "reason": "Thư điện tử của xã bị chuyển tiếp nhầm"}


def test_the_reviewers_link_is_reissued_to_its_review(linked):
    """Ban Dân vận Tỉnh ủy evaluates nothing itself; its link opens the review it decides."""
    before = {x.name for x in _letters(linked.tmp / "outbox")}
    result = _reissue(linked, "ban-dan-van-tinh-uy")
    assert result.exit_code == 0, result.output
    (letter,) = [x for x in _letters(linked.tmp / "outbox") if x.name not in before]
    (url,) = re.findall(r"Đường dẫn xem báo cáo và gửi ý kiến thẩm định: (\S+)", letter.text)
    assert read_link(SECRET, url.rsplit("/u/", 1)[1]) == Claim(KEY, "ban-dan-van-tinh-uy", "review", 1)
    assert "Ban Dân vận Tỉnh ủy thẩm định" in letter.text


@pytest.mark.parametrize("unit, said", [("xa-khong-co-that", "xa-khong-co-that"),
                                        ("uy-ban-mttq-tinh", "không có nhiệm vụ tự đánh giá hay thẩm định")])
def test_a_unit_unknown_or_without_a_task_is_refused_and_nothing_is_written(linked, unit, said):
    before = _written(linked)
    result = _reissue(linked, unit)
    assert result.exit_code == 1 and said in result.output and unit in result.output
    assert isinstance(result.exception, SystemExit)  # refused, not crashed
    assert _written(linked) == before


def test_a_closed_tasks_link_is_not_reissued(tmp_path):
    """Once its task has closed the unit can no longer report: no new link, nothing written."""
    import datetime as dt

    from planflow.simulation import EngineActions

    year = _start(tmp_path, portal=True)
    closed = dt.datetime(2022, 12, 7, 9, tzinfo=year.plan.calendar.tz)  # communes close 07/12 08:00
    year.engine.fire_timers(closed, root_id=year.root)
    EngineActions(year.engine, year.root).drain(closed)
    before = _written(year)
    result = _reissue(year, COMMUNE)
    assert result.exit_code == 1 and "đã đóng" in result.output and COMMUNE in result.output
    assert isinstance(result.exception, SystemExit) and _written(year) == before  # refused, not crashed


def test_a_plan_not_started_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    connect(url)
    result = _invoke(COMMUNE, "--definition", str(PLAN), "--year", "2022", "--db", url, "--actor", "A",
                     "--reason", "R", "--outbox", str(tmp_path / "outbox"))
    assert result.exit_code == 1 and "chưa bắt đầu" in result.output and KEY in result.output
    assert not (tmp_path / "outbox").exists()


def test_without_a_portal_no_link_is_reissued(linked):
    before = _written(linked)
    result = _reissue(linked, COMMUNE, portal=False)
    assert result.exit_code == 1 and "PLANFLOW_PORTAL_URL" in result.output
    assert isinstance(result.exception, SystemExit)  # refused, not crashed
    assert _written(linked) == before
