"""The main job end to end: `simulate` through Prefect on the shipped plan and scenario."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import PLAN, SCENARIO

pytestmark = pytest.mark.usefixtures("prefect_harness")

TZ = dt.timezone(dt.timedelta(hours=7))


def _simulate(out_dir: Path, db_url: str):
    from planflow.flows.simulate import run_simulation

    return asyncio.run(run_simulation(PLAN, SCENARIO, out_dir, db_url))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, prefect_harness):
    out = tmp_path_factory.mktemp("reference")
    db = f"sqlite:///{out / 'planflow.db'}"
    return _simulate(out, db), out, db


def _expected_status(how, due: dt.datetime) -> str:
    if how == "never":
        return "missing"
    if how == "on_time":
        return "on_time"
    when = how if isinstance(how, dt.datetime) else dt.datetime.fromisoformat(how)
    return "on_time" if when.replace(microsecond=0) <= due else "late"


def test_summary_covers_every_unit_with_statuses_from_the_scenario(reference, plan):
    result, out, _ = reference
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    units = summary["units"]
    groups = {g: [c for c, u in units.items() if u["group"] == g] for g in ("department", "district", "commune")}
    assert {g: len(c) for g, c in groups.items()} == {"department": 18, "district": 12, "commune": 235}
    assert set(groups["department"]) == {u.code for u in plan.registry.group("departments")}

    # the plan's words, read by the calendar: Fri 9/12 end of day; communes 5 working days earlier
    assert units["so-tu-phap"]["due"] == "2022-12-09T23:59:59+07:00"
    assert units["ubnd-huyen-gia-loc"]["due"] == "2022-12-09T23:59:59+07:00"
    assert units["ubnd-tp-chi-linh--phuong-sao-do"]["due"] == "2022-12-02T23:59:59+07:00"

    scenario = yaml.safe_load(SCENARIO.read_text(encoding="utf-8"))
    for code, unit in units.items():
        how = scenario["units"].get(code, scenario["default"])["submit"]
        assert unit["status"] == _expected_status(how, dt.datetime.fromisoformat(unit["due"])), code
        if unit["status"] == "missing":
            assert unit["score"] is None and unit["classification"] == "Không đủ điều kiện xếp loại"
        else:
            assert 0 < unit["score"] <= 100
            assert unit["classification"] in {"Tốt", "Khá", "Trung bình", "Yếu"}
    # the on-time criterion (g7.1, 5 points) is given by the workflow, not by the unit
    assert units["so-khoa-hoc-va-cong-nghe"]["status"] == "on_time"
    assert units["ban-quan-ly-cac-kcn"]["status"] == "late"

    assert summary["status"] == "completed"
    assert summary["review_rounds"] == len(scenario["review"]) == 2
    stages = {k: dt.datetime.fromisoformat(v) for k, v in summary["stages"].items()}
    assert set(stages) == {"dissemination", "district_cycle", "self_evaluation", "aggregation", "review",
                           "publication"}
    assert stages["dissemination"] < stages["self_evaluation"] <= stages["review"] <= stages["publication"]
    # the last review decision (approve, 27/12 09:00) releases publication
    assert stages["publication"] == dt.datetime(2022, 12, 27, 9, tzinfo=TZ)


def test_report_lists_units_that_never_reported(reference, plan):
    result, out, _ = reference
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "# BÁO CÁO" in report
    assert "Báo cáo lần 2" in report  # the returned report was revised
    missing = [c for c, u in result.summary["units"].items() if u["status"] == "missing"]
    assert missing
    section = report.split("IV. ĐƠN VỊ KHÔNG ĐỦ ĐIỀU KIỆN XẾP LOẠI")[1]
    for code in missing:
        assert plan.registry.get(code).name in section


def _messages(out: Path) -> list:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted((out / "outbox").glob("*.eml"))]


def test_outbox_holds_one_readable_message_per_notification(reference, plan):
    result, out, db = reference
    messages = _messages(out)
    assert len(messages) == result.summary["notifications"]["sent"]
    kinds: dict[str, list] = {}
    for m in messages:
        kinds.setdefault(m["X-Planflow-Kind"], []).append(m)
        assert m["To"].endswith(".example.org")
        assert "Kính gửi" in m.get_body(("plain",)).get_content()
    recipients = len(plan.registry.group("recipients"))
    communes = len(plan.registry.group("communes"))
    assert len(kinds["dissemination"]) == recipients + communes  # the plan, then each district's directive
    assert len(kinds["publication"]) == recipients
    assert len(kinds["review-request"]) == len(kinds["review-result"]) == 2
    assert len(kinds["report-upward"]) == len(plan.registry.group("report_to"))
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        reminders = conn.execute("select count(*) from chases where kind = 'reminder'").fetchone()[0]
    assert reminders > 0 and len(kinds["reminder"]) == reminders
    level1 = [e for e in result.summary["escalations"] if e["level"] == 1]
    assert len(kinds["overdue"]) == len(level1)  # every unit at level 1 is told itself
    # Sở Y tế never reported: Ban Dân vận Tỉnh ủy got the level-2 letter naming it
    to_ban_dan_van = [m for m in kinds["escalation-2"] if m["To"].startswith("ban-dan-van-tinh-uy@")]
    assert any("Sở Y tế" in m.get_body(("plain",)).get_content() for m in to_ban_dan_van)
    subject = kinds["dissemination"][0]["Subject"]
    assert "dân vận" in subject


def test_each_late_unit_climbs_the_ladder_written_in_the_scenario(reference):
    result, _, _ = reference
    scenario = yaml.safe_load(SCENARIO.read_text(encoding="utf-8"))
    climbed: dict[str, list] = {}
    for e in result.summary["escalations"]:
        climbed.setdefault(e["unit"], []).append([e["level"], e["at"]])
    expected_units = {c for c, u in scenario["units"].items() if "expect" in u}
    assert expected_units  # the scenario documents its ladders
    for code in expected_units:
        want = [[lvl, dt.datetime.fromisoformat(at).replace(tzinfo=TZ).isoformat()]
                for lvl, at in scenario["units"][code]["expect"]["escalations"]]
        assert climbed.get(code, []) == want, code
        unit = result.summary["units"][code]
        assert unit["escalation_level"] == (want[-1][0] if want else 0)
    # nobody else was chased: every unit that climbed is one the scenario made late or silent
    assert set(climbed) <= expected_units
    # the tasks' QĐ 42 status at the end of the year
    units = result.summary["units"]
    assert units["so-tu-phap"]["status_qd42"] == "hoàn thành đúng hạn"
    assert units["so-xay-dung"]["status_qd42"] == "hoàn thành quá hạn"
    assert units["so-y-te"]["status_qd42"] == "chưa hoàn thành quá hạn"
    # no letter goes out on a day off
    from planflow import BusinessCalendar

    cal = BusinessCalendar.load("vn-civil-service")
    for e in result.summary["escalations"]:
        assert cal.is_working_day(dt.datetime.fromisoformat(e["at"]).date()), e


def test_second_run_on_the_same_db_changes_nothing(reference):
    result, out, db = reference
    before = sorted(p.name for p in (out / "outbox").glob("*.eml"))
    again = _simulate(out, db)
    assert again.summary == result.summary
    assert sorted(p.name for p in (out / "outbox").glob("*.eml")) == before


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_same_result_on_postgresql_and_the_stores_password_is_written_nowhere(reference, tmp_path, db_url):
    """The command as a user runs it (its own Prefect server, no PREFECT_ or PLANFLOW_ variable),
    on a PostgreSQL store whose URL carries a password (trust authentication accepts any): the
    year ends as on SQLite, and the password is on no output and in no file under --out — the
    summary, report, letters, and the Prefect home it ran from (its database with the flow runs,
    logs, events and artifacts). One run for both: a simulate costs about a minute."""
    from tests.test_secrets import _files_holding, _with_password

    url, password = _with_password(db_url)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PLANFLOW_"))}
    done = subprocess.run(_simulate_cmd(out, url), cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary, ref = json.loads((out / "summary.json").read_text(encoding="utf-8")), reference[0].summary
    assert summary["units"] == ref["units"]
    assert summary["stages"] == ref["stages"]
    assert summary["review_rounds"] == ref["review_rounds"]
    assert (out / "prefect-home").is_dir()
    assert password not in done.stdout + done.stderr
    assert _files_holding(out, password) == []


def _count(db_path: Path, table: str) -> int:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(f"select count(*) from {table}").fetchone()[0]


def test_killed_run_resumes_to_the_same_summary(reference, tmp_path):
    from prefect.settings import PREFECT_API_URL

    out = tmp_path / "out"
    db_path = tmp_path / "killed.db"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    cmd = [sys.executable, "-m", "planflow.flows.cli", "simulate", str(PLAN), "--scenario", str(SCENARIO),
           "--out", str(out), "--db", f"sqlite:///{db_path}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        # kill it once the communes have started reporting, well before the end
        while time.monotonic() < deadline and proc.poll() is None:
            if db_path.exists():
                try:
                    if _count(db_path, "submissions") > 50:
                        break
                except sqlite3.OperationalError:
                    pass
            time.sleep(0.2)
        assert proc.poll() is None, f"simulate ended before it could be killed: {proc.stderr.read()!r}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "summary.json").exists()

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    ref = reference[0].summary
    for key in ("units", "review_rounds", "stages", "notifications", "status"):
        assert summary[key] == ref[key], key
    ref_db = reference[2].removeprefix("sqlite:///")
    for table in ("submissions", "work_items", "outbox", "reports", "instances"):
        assert _count(db_path, table) == _count(Path(ref_db), table), table
    assert len(list((out / "outbox").glob("*.eml"))) == ref["notifications"]["sent"]


# --- killed, resumed, run twice at once: the same record ---------------------------------


def _letters(out: Path) -> list:
    """Every letter as a recipient reads it (headers and plain body), in a canonical order;
    file names and Message-IDs are left out: they carry row ids, which two processes
    inserting at once (or a killed transaction) number differently."""
    letters = []
    for p in (out / "outbox").glob("*.eml"):
        m = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        letters.append((m["Subject"], m["From"], m["To"], m["Date"], m.get_body(("plain",)).get_content()))
    return sorted(letters)


def _store_count(db, sql: str) -> int:
    from sqlalchemy import text

    try:
        with db.connect() as conn:
            return conn.scalar(text(sql)) or 0
    except Exception:  # noqa: BLE001 - the tables are not there yet
        return 0


def _completed_before_created(db) -> list:
    """Tokens, work items, timers or instances whose end comes before their beginning."""
    from sqlalchemy import text

    queries = [
        "select id, element_id from tokens where completed_at < created_at",
        "select w.id, w.unit_code from work_items w join submissions s on s.work_item_id = w.id "
        "where s.recorded_at < w.opened_at",
        "select t.id, t.boundary_id from timers t join tokens k on k.id = t.token_id where t.fired_at < k.created_at",
        "select id, key from instances where ended_at < started_at",
    ]
    with db.connect() as conn:
        return [tuple(r) for q in queries for r in conn.execute(text(q))]


def _simulate_cmd(out: Path, db_url: str) -> list[str]:
    return [sys.executable, "-m", "planflow.flows.cli", "simulate", str(PLAN), "--scenario", str(SCENARIO),
            "--out", str(out), "--db", db_url]


def _harness_env() -> dict:
    """The session's Prefect API for the child processes: no server started per run."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}


def _same_as_reference(reference, out: Path, db) -> None:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary == reference[0].summary  # field by field, timestamps included
    assert (out / "report.md").read_text(encoding="utf-8") == (reference[1] / "report.md").read_text(encoding="utf-8")
    assert _letters(out) == _letters(reference[1])
    assert _completed_before_created(db) == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_killed_at_random_moments_on_postgresql_the_rerun_writes_what_one_run_writes(reference, tmp_path, db_url):
    import random

    from planflow import store

    db = store.connect(db_url)
    seed = random.randrange(1 << 30)
    # kill -9 twice, when the store's audit has reached a random count (a year writes ~790
    # rows), each run carrying on the one before; the third run finishes
    kills = sorted(random.Random(seed).sample(range(5, 600), 2))
    out = tmp_path / "out"
    for at_rows in kills:
        proc = subprocess.Popen(_simulate_cmd(out, db_url), env=_harness_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                if _store_count(db, "select count(*) from audit") >= at_rows:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, f"seed {seed}: simulate ended before {at_rows} audit rows: " \
                                        f"{proc.stderr.read()!r}"
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stderr.close()
        assert _completed_before_created(db) == [], f"seed {seed}, killed at {at_rows} audit rows"
    assert not (out / "summary.json").exists()

    done = subprocess.run(_simulate_cmd(out, db_url), env=_harness_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    try:
        _same_as_reference(reference, out, store.connect(db_url))
    except AssertionError as exc:
        raise AssertionError(f"seed {seed}, killed at {kills} audit rows: {exc}") from exc


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_simulate_processes_at_once_on_one_store_write_what_one_writes(reference, tmp_path, db_url):
    from planflow import store

    out = tmp_path / "out"
    procs = [subprocess.Popen(_simulate_cmd(out, db_url), env=_harness_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        errs = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], errs
    _same_as_reference(reference, out, store.connect(db_url))


def test_scenario_naming_an_unknown_unit_is_refused_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("default: {submit: on_time}\nunits:\n  so-tu-phap: {submit: never}\n"
                   "  so-khong-ton-tai: {submit: never}\n", encoding="utf-8")
    db = tmp_path / "never.db"
    done = subprocess.run([sys.executable, "-m", "planflow.flows.cli", "simulate", str(PLAN), "--scenario", str(bad),
                           "--out", str(tmp_path / "out"), "--db", f"sqlite:///{db}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "so-khong-ton-tai" in done.stderr and "bad.yaml:4" in done.stderr
    assert "Traceback" not in done.stderr
    assert not db.exists() and not (tmp_path / "out").exists()


# --- its own Prefect server, and where it may write ----------------------------------------


def _descendants(pid: int) -> set[int]:
    """The live processes below ``pid`` (from /proc), zombies left out."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel ties the server to simulate on Linux")
def test_after_kill_9_of_simulate_no_process_of_it_stays_behind(tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    proc = subprocess.Popen([sys.executable, "-m", "planflow.flows.cli", "simulate", str(PLAN), "--scenario",
                             str(SCENARIO), "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        # in the middle of the year: its own server up, the flows recording (audit rows)
        while proc.poll() is None and time.monotonic() < deadline:
            if (out / "planflow.db").exists():
                try:
                    if _count(out / "planflow.db", "audit") > 20:
                        break
                except sqlite3.OperationalError:
                    pass
            time.sleep(0.2)
        assert proc.poll() is None, f"simulate ended before it could be killed: {proc.stderr.read()!r}"
        children = _descendants(proc.pid)
        assert children, "simulate runs its Prefect API server as a child"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        deadline = time.monotonic() + 10
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [c for c in children if _alive(c)]
        assert left == [], [Path(f"/proc/{c}/cmdline").read_bytes() for c in left]
    finally:
        for pid in [proc.pid, *children]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.stderr.close()


def _unwritable_places(tmp_path: Path) -> list[tuple[Path, Path]]:
    """(an --out simulate cannot write to, the folder to watch for anything written)."""
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("not a folder\n", encoding="utf-8")
    places = [(a_file, tmp_path), (a_file / "out", tmp_path)]
    if os.geteuid() != 0:
        read_only = tmp_path / "read-only"
        read_only.mkdir(mode=0o555)
        places.append((read_only / "out", read_only))
    elif Path("/sys").is_dir():  # root writes through permissions: take a folder no one can write in
        places.append((Path("/sys/planflow-out/out"), tmp_path))
    return places


def test_an_unwritable_out_is_a_clear_error_and_nothing_is_written(tmp_path):
    for out, watched in _unwritable_places(tmp_path):
        before = sorted(watched.rglob("*"))
        done = subprocess.run([sys.executable, "-m", "planflow.flows.cli", "simulate", str(PLAN),
                               "--out", str(out)], capture_output=True, text=True, timeout=120,
                              env={k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"})
        assert done.returncode == 1, (out, done.stdout, done.stderr)
        assert f"--out {out}" in done.stderr and "cannot write" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert sorted(watched.rglob("*")) == before, out  # no folder, store or file made
        assert out.is_file() or not out.exists()
