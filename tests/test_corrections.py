"""Whether a unit may correct its report before the due date is a rule of the definition
(``corrections: before_due`` on a user task; none by default, as in the shipped plan).

A copy of the shipped plan lets communes correct theirs: through its link a commune sends a
corrected report before its due date, which replaces the one it sent (kept in the audit row
``task.corrected``) and gets its own receipt letter; after the due date, or once the task has
completed, a correction is refused and nothing is written. On a step that is not a user task
the rule is a located definition error.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from planflow import DefinitionError, Submission, SubmissionError, load_plan
from planflow import store as s
from planflow.audit import read as read_audit
from tests.conftest import PLAN, REPO
from tests.portal_site import COMMUNE, Site, text_of

RULE = "        form: self-evaluation\n        due: {before: \"2022-12-10\", offset: -5wd}\n"


def _plan_copy(folder: Path, old: str, new: str) -> Path:
    shutil.copytree(REPO / "definitions", folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    text = PLAN.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path = folder / PLAN.name
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def correcting(tmp_path_factory) -> Path:
    """The shipped plan whose communes may correct their reports before their due date."""
    folder = tmp_path_factory.mktemp("corrections") / "definitions"
    return _plan_copy(folder, "        for_each: communes of scope\n" + RULE,
                      "        for_each: communes of scope\n" + RULE + "        corrections: before_due\n")


@pytest.fixture
def site(correcting, db_url, tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return Site(load_plan(correcting), db_url, tmp_path / "files", definition=correcting)


def test_a_commune_corrects_its_report_before_its_due_date(site):
    path = site.link()
    first = site.post(path, site.form(path) | site.scores(g1_1="2"))
    assert first.status_code == 200
    page = site.client.get(path)
    shown = text_of(page)
    assert "Sửa báo cáo" in shown and "trước 23:59:59 ngày 02/12/2022" in shown
    assert 'name="score-g1.1"' in page.text and 'value="2"' in page.text  # filled with what was sent

    site.now = site.now + dt.timedelta(days=3)
    corrected = site.post(path, site.form(path) | site.scores(g1_1="4.5") | {"notes": "Bổ sung minh chứng"},
                          ("bao-cao-sua.pdf", b"%PDF-1.4\n% ban da sua\n%%EOF\n", "application/pdf"))
    assert corrected.status_code == 200 and "Tổng điểm: 99,5" in text_of(corrected)
    with site.db.connect() as conn:
        row = conn.execute(select(s.submissions).where(s.submissions.c.unit_code == COMMUNE)).one()
        receipts = conn.execute(select(s.outbox.c.key).where(s.outbox.c.kind == "receipt")).all()
        root = site.root
        (audit,) = [a for a in read_audit(conn, s.tree_ids(conn, root), ("task.corrected",))]
    assert row.total == 99.5 and row.submitted_at == site.now and row.payload["notes"] == "Bổ sung minh chứng"
    assert audit.unit_code == COMMUNE and audit.detail["previous"]["total"] == 97.0
    assert audit.detail["previous"]["payload"]["scores"]["g1.1"] == 2
    assert len(receipts) == 2  # each report its own receipt

    site.now = dt.datetime(2022, 12, 3, 8, tzinfo=site.plan.calendar.tz)  # past its due date (02/12)
    late = site.client.get(path)
    assert "Sửa báo cáo" not in text_of(late) and 'type="file"' not in late.text
    before = site.counts()
    assert site.post(path, {"csrf": "x"} | site.scores()).status_code == 409
    assert site.counts() == before


def test_a_correction_after_the_task_completed_is_refused(site):
    """Once every commune of the district has reported, the district's task completes and its
    answers are used: a correction is refused by the engine, nothing written."""
    at = site.now
    open_items = [w for w in site.engine.open_work(site.root) if w.element_id == "commune_self_evaluation"
                  and site.plan.registry.get(w.unit_code).parent == "ubnd-thanh-pho-hai-duong"]
    full = {"scores": {c: i.max for c, i in site.plan.forms["self-evaluation"].items.items()
                       if not i.auto_from_workflow}}
    site.engine.submit([Submission(w.unit_code, at, full, w.element_id) for w in open_items], at, root_id=site.root)
    before = site.counts()
    again = {"scores": {**full["scores"], "g1.1": 1}}
    with pytest.raises(SubmissionError, match="correction refused — 'commune_self_evaluation' has completed"):
        site.engine.submit([Submission(COMMUNE, at + dt.timedelta(hours=1), again)], at, root_id=site.root)
    assert site.counts() == before
    assert "Sửa báo cáo" not in text_of(site.client.get(site.link()))


def test_the_shipped_plan_takes_no_corrections(plan, db_url, tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    site = Site(plan, db_url, tmp_path / "files")
    path = site.link()
    assert site.post(path, site.form(path) | site.scores()).status_code == 200
    assert "Sửa báo cáo" not in text_of(site.client.get(path))
    with pytest.raises(SubmissionError, match="was already submitted with other answers"):
        site.engine.submit([Submission(COMMUNE, site.now, {"scores": {"g1.1": 1}})], site.now, root_id=site.root)


def test_corrections_on_a_step_that_is_not_a_user_task_is_a_located_error(tmp_path):
    old = "    template: review-request\n"
    path = _plan_copy(tmp_path / "definitions", old, old + "    corrections: before_due\n")
    with pytest.raises(DefinitionError) as error:
        load_plan(path)
    line = path.read_text(encoding="utf-8").splitlines().index("  - id: request_review                   # III.4") + 1
    assert f"{path.name}:{line}" in str(error.value) and "request_review" in str(error.value)
    assert "only a userTask takes 'corrections'" in str(error.value)
