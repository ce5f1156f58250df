"""The Prefect UI, for real: a Prefect server, `planflow serve`, a mail server, headless Chromium.

A server on a free port of 127.0.0.1 with its own PREFECT_HOME (its database a fresh PostgreSQL
one when reachable, as in production) and basic authentication
(``PREFECT_SERVER_API_AUTH_STRING``; every client gives ``PREFECT_API_AUTH_STRING``);
`planflow serve` registers the deployments and automations against it and runs their
flows, sending mail by SMTP to a server of the test (``tests.smtp.Mailbox``, which can
refuse an address). The 2022 plan is replayed as an operator would: the replay clock set
to 15/3/2022 (a date and a time in Vietnam's time), the plan cycle; then, while the mail
server refuses UBND huyện Bình Giang, the clock to 12/12 and the deadline sweep: the run is
red, says which letters failed and what to do, and the Dashboard counts it. In Chromium
(Debian's, driven by Playwright at 1440x900 — no browser download) the operator logs in,
reads the Dashboard and the failed run, picks Sở Y tế from the unit list of
`submit-self-evaluation` (a score above its maximum is refused on the form), re-triggers
the failed step picked from its list (the letters go out, its table says so), and Ban Dân
vận records its decision with the reviewer's name. A typo cannot become a run; a refused
input ends "Từ chối" and writes no incident letter. Every date in the run names is 2022's.
Screenshots go to test-output/browser/.

Needs /usr/bin/chromium (`apt-get install chromium`) and the `playwright` package; skipped
without them unless PLANFLOW_REQUIRE_BROWSER=1 (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN, PLAN, REPO, _pg_available

CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "test-output" / "browser"
BIN = Path(sys.executable).parent
PLAN_ID = "hai-duong-dan-van-2022"  # every deployment of the plan is named by it
KEY = f"{PLAN_ID}/2022"
OPERATOR = "so-noi-vu:nguyen-van-a"
SUBMITTER = "so-y-te:pham-van-d"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module", autouse=True)
def _browser_available():
    problem = _missing()
    if problem:
        if os.environ.get("PLANFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required but {problem}")
        pytest.skip(problem)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env() -> dict:
    """This process's environment without Prefect's or planflow's settings (the session
    harness sets some): each process below gets exactly the ones it should have."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PLANFLOW_"))}


def _stop(proc: subprocess.Popen, name: str) -> None:
    """Stop a process started in its own session, and everything it started."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
    raise RuntimeError(f"{name} (pid {proc.pid}) did not stop")


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@contextlib.contextmanager
def _server_database():
    """The Prefect server's own database: a fresh PostgreSQL database when the server is
    reachable (as a real deployment runs it: a SQLite-backed Prefect server, under the
    sweep's burst of events, answers "database is locked" and the UI's Submit shows "Oops.
    Something went wrong"), dropped afterwards; None (SQLite in its PREFECT_HOME) otherwise."""
    if _pg_available() is not None:
        yield None
        return
    import psycopg

    name = f"prefect_browser_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Server:
    def __init__(self, port: int, home: Path, log: Path, database: str | None = None):
        self.base = f"http://127.0.0.1:{port}"
        self.api = f"{self.base}/api"
        self.log = log
        self.auth = ("planflow-admin", secrets.token_urlsafe(12))
        login = ":".join(self.auth)
        self.env = {**_clean_env(), "PREFECT_HOME": str(home), "PREFECT_API_URL": self.api,
                    # basic authentication: the server asks for it, every client gives it
                    "PREFECT_SERVER_API_AUTH_STRING": login, "PREFECT_API_AUTH_STRING": login,
                    "PREFECT_UI_API_URL": self.api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
                    # a SQLite-backed server answers 503 when its database is locked; log those
                    "PREFECT_API_LOG_RETRYABLE_ERRORS": "true",
                    # and let its writes wait for a lock longer than the default 10 s
                    "PREFECT_SERVER_DATABASE_TIMEOUT": "30"}
        if database:
            self.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database

    def get(self, path: str):
        import httpx

        r = httpx.get(f"{self.api}{path}", timeout=10, auth=self.auth)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict):
        import httpx

        r = httpx.post(f"{self.api}{path}", json=body, timeout=10, auth=self.auth)
        r.raise_for_status()
        return r.json()

    def flow_runs(self, flow: str) -> list[dict]:
        return self.post("/flow_runs/filter", {"flows": {"name": {"any_": [flow]}}, "sort": "EXPECTED_START_TIME_ASC"})

    def wait_run(self, run_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(f"/flow_runs/{run_id}")
            if run["state"] and run["state"]["type"] in TERMINAL:
                return run
            time.sleep(0.5)
        raise AssertionError(f"flow run {run_id} not finished after {timeout:.0f} s: {run['state']}")

    def wait_for(self, what: str, check, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.5)
        raise AssertionError(f"{what}: not seen after {timeout:.0f} s")


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on a free port of 127.0.0.1, its own PREFECT_HOME; stopped after."""
    with _server_database() as database:
        yield from _started_server(Server(_free_port(), tmp_path / "prefect-home", tmp_path / "server.log",
                                          database), tmp_path)


def _started_server(server: Server, tmp_path: Path):
    with open(server.log, "wb") as log:
        proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                 "--port", server.base.rsplit(":", 1)[1]],
                                env=server.env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        import httpx

        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"prefect server exited:\n{_tail(server.log)}"
            try:
                if httpx.get(f"{server.api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"no /api/health after 90 s:\n{_tail(server.log)}"
            time.sleep(0.5)
        yield server
    finally:
        _stop(proc, "prefect server")


@pytest.fixture
def mailbox():
    """A mail server on 127.0.0.1 that keeps what it gets and refuses ``mailbox.refuse`` (550)."""
    from aiosmtpd.controller import Controller

    from tests.smtp import Mailbox, free_port

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


@pytest.fixture
def served(prefect_server, mailbox, tmp_path):
    """`planflow serve` against the server: deployments, automations, and the runs they start;
    mail by SMTP to the test's mail server, one attempt per letter (a refusal is final)."""
    store = tmp_path / "planflow.db"
    outbox = tmp_path / "outbox"
    log_path = tmp_path / "serve.log"
    env = {**prefect_server.env, "PLANFLOW_OUTBOX_DIR": str(outbox),
           "PLANFLOW_SMTP_HOST": "127.0.0.1", "PLANFLOW_SMTP_PORT": str(mailbox[1]), "PLANFLOW_SMTP_SECURITY": "none",
           "PLANFLOW_OUTBOX_MAX_ATTEMPTS": "1", "PLANFLOW_ADVANCE_AFTER": "5",
           "PREFECT_RUNNER_POLL_FREQUENCY": "2", "PREFECT_LOGGING_LEVEL": "INFO",
           # the units' portal: letters carry personal links to it (started by the test that needs it)
           "PLANFLOW_PORTAL_URL": f"http://127.0.0.1:{_free_port()}", "PLANFLOW_PORTAL_SECRET": secrets.token_urlsafe(32)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(BIN / "planflow"), "serve", "--db", f"sqlite:///{store}"], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def registered():
            assert proc.poll() is None, f"planflow serve exited:\n{_tail(log_path)}"
            deployments = prefect_server.post("/deployments/filter", {})
            automations = prefect_server.post("/automations/filter", {})
            ready = len(deployments) == 10 and len(automations) == 4 and b"serving" in log_path.read_bytes().lower()
            return ready and (deployments, automations)

        deployments, automations = prefect_server.wait_for("10 deployments and 4 automations", registered, 90)
        assert {d["name"] for d in deployments} == {PLAN_ID}
        assert all(a["name"].startswith(f"planflow {PLAN_ID}: ") for a in automations)
        flows = {f["id"]: f["name"] for f in prefect_server.post("/flows/filter", {})}
        yield {"server": prefect_server, "store": store, "outbox": outbox, "log": log_path, "env": env,
               "mailbox": mailbox[0], "deployments": {flows[d["flow_id"]]: d for d in deployments},
               "automations": automations}
    finally:
        _stop(proc, "planflow serve")


def _deployment_run(served, name: str, **params) -> str:
    """`prefect deployment run NAME -p k=v ...`, as an operator types it; returns the run id."""
    done = _cli_run(served, name, **params)
    assert done.returncode == 0, done.stdout + done.stderr
    return re.search(r"UUID: ([0-9a-f-]{36})", done.stdout).group(1)


def _cli_run(served, name: str, **params) -> subprocess.CompletedProcess:
    args = [str(BIN / "prefect"), "deployment", "run", name]
    for key, value in params.items():
        args += ["-p", f"{key}={value}"]
    return subprocess.run(args, env=served["server"].env, capture_output=True, text=True, timeout=60)


def _query(store: Path, sql: str, *args):
    with sqlite3.connect(store) as conn:
        return conn.execute(sql, args).fetchall()


def _property(page, label: str):
    """A field of Prefect's schema form, found by the label the UI shows (its title)."""
    return page.locator(
        f"xpath=//span[contains(@class,'schema-form-property__label') and normalize-space()=\"{label}\"]"
        "/ancestor::div[contains(concat(' ',normalize-space(@class),' '),' schema-form-property ')][1]")


def _pick(page, label: str, option: str) -> None:
    """Choose ``option`` from the list of the form's field ``label`` (Prefect's select)."""
    control = _property(page, label).locator(".p-select-button__control").first
    control.click()
    options = page.get_by_role("option")
    for key in ("ArrowDown", "Enter", "Space"):
        if options.count():
            break
        page.wait_for_timeout(500)
        control.press(key)
    choice = options.filter(has_text=option).first
    choice.scroll_into_view_if_needed()
    choice.click()


def _replay_clock(served, day: str, time_: str) -> None:
    """The operator moves the replay clock of the 2022 instance (the first time: starts it):
    a date and a time in Vietnam's time."""
    run_id = _deployment_run(served, f"set-replay-clock/{PLAN_ID}", day=day, time=time_, actor=OPERATOR,
                             reason="Chạy lại Kế hoạch năm 2022")
    run = served["server"].wait_run(run_id, 60)
    assert run["state"]["type"] == "COMPLETED", (run["state"], _tail(served["log"]))
    assert run["name"] == f"Đặt đồng hồ chạy lại {day[8:10]}/{day[5:7]}/{day[:4]} {time_}"


def _nothing_for_callers_to_choose(served, tmp_path: Path) -> None:
    """No deployment takes a definition, a store or an instance; given anyway, they are refused
    and the worker neither reads the file nor creates the database."""
    server = served["server"]
    for name, deployment in served["deployments"].items():
        properties = set(deployment["parameter_openapi_schema"]["properties"])
        assert not properties & {"definition", "db_url", "instance", "as_of", "submitted_at"}, name
    import httpx

    assert httpx.get(f"{server.api}/deployments/{served['deployments']['advance']['id']}", timeout=10).status_code == 401
    attack = tmp_path / "attack.db"
    done = _cli_run(served, f"advance/{PLAN_ID}", definition="/etc/passwd", db_url=f"sqlite:///{attack}", instance=KEY)
    if done.returncode == 0:  # the server took the run: its flow refuses parameters it does not have
        run = server.wait_run(re.search(r"UUID: ([0-9a-f-]{36})", done.stdout).group(1), 60)
        assert run["state"]["type"] in ("FAILED", "CRASHED"), run["state"]
    assert not attack.exists()


def _shot(page, name: str) -> None:
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def _years(text: str) -> set[str]:
    return set(re.findall(r"\b\d{2}/\d{2}/(\d{4})\b", text))


BINH_GIANG = "ubnd-huyen-binh-giang@hai-duong.example.org"
SO_Y_TE = "Sở Y tế (so-y-te)"
COMMUNE_STEP = "UBND cấp xã tự đánh giá, báo cáo UBND cấp huyện (commune_self_evaluation)"
REVIEWER = "Hoàng Thị E, Phó Trưởng Ban Dân vận Tỉnh ủy"


def _year_runs_on_the_api(served, tmp_path) -> dict:
    """The plan cycle, then the sweep after the deadline while the mail server refuses UBND
    huyện Bình Giang: the sweep's run is red and says what failed and what to do."""
    server, store, box = served["server"], served["store"], served["mailbox"]
    cycle = served["deployments"]["plan-cycle"]
    schedule = cycle["schedules"][0]["schedule"]
    assert (schedule["cron"], schedule["timezone"]) == ("0 8 15 3 *", "Asia/Ho_Chi_Minh")
    _nothing_for_callers_to_choose(served, tmp_path)

    _replay_clock(served, "2022-03-15", "08:00")
    cycle_id = _deployment_run(served, f"plan-cycle/{PLAN_ID}")
    run = server.wait_run(cycle_id, 120)
    assert run["state"]["type"] == "COMPLETED", (run["state"], _tail(served["log"]))
    assert run["name"] == "Ban hành Kế hoạch 15/03/2022 08:00"
    assert _query(store, "select key, status, replay from instances where parent_id is null") == [(KEY, "running", 1)]
    assert len(box.envelopes) == 275
    _commune_reports_through_its_link(served, tmp_path)
    _a_burst_of_submissions_starts_one_run(served)

    box.refuse.add(BINH_GIANG)  # the district's mailbox is full: every letter to it is refused
    _replay_clock(served, "2022-12-12", "08:00")
    sweep_id = _deployment_run(served, f"daily-deadline-sweep/{PLAN_ID}")
    sweep = server.wait_run(sweep_id, 150)
    assert sweep["name"] == "Quét hạn 12/12/2022 08:00"
    # the sweep's burst of overdue events starts one delivery run; the letters to Bình Giang
    # fail in the sweep's own delivery or in that run, whichever claims them first
    deliveries = server.wait_for("a deliver-outbox run", lambda: server.flow_runs("deliver-outbox"), 30)
    assert deliveries[0]["created_by"]["display_value"] == f"planflow {PLAN_ID}: đơn vị quá hạn → gửi thông báo"
    delivery = server.wait_run(deliveries[0]["id"], 60)
    failed = _query(store, "select element_id, count(*) from outbox where status = 'failed' group by element_id")
    assert failed, _tail(served["log"])
    red = [r for r in (sweep, delivery) if r["state"]["type"] == "FAILED"]
    assert red and all(r["state"]["name"] == "Failed" for r in red), (sweep["state"], delivery["state"])
    # red, in Vietnamese: how many letters, from which step, to whom, and what to do
    message = " ".join(r["state"]["message"] for r in red)
    assert re.match(r"\d+ thư không gửi được sau khi đã thử lại — bước «", message), message
    assert "UBND huyện Bình Giang" in message and "Việc cần làm" in message and "retrigger-step" in message
    for other in (sweep, delivery):
        if other not in red:  # done, and says the failures are still open
            assert other["state"]["name"] == "Hoàn thành, còn sự cố", other["state"]
    # a real incident: the automation records it and writes to Sở Nội vụ
    incidents = server.wait_for("the record-incident runs", lambda: len(server.flow_runs("record-incident")) == len(red)
                                and server.flow_runs("record-incident"), 60)
    assert {r["parameters"]["flow_run"] for r in incidents} == {r["name"] for r in red}
    assert incidents[0]["created_by"]["display_value"] == f"planflow {PLAN_ID}: lần chạy thất bại → sự cố"
    for incident in incidents:
        assert server.wait_run(incident["id"], 90)["state"]["type"] == "COMPLETED"
    return {"cycle": cycle_id, "sweep": sweep, "red": red, "failed": dict(failed)}


COMMUNE_MAIL = "ubnd-tp-hai-duong--phuong-cam-thuong@hai-duong.example.org"  # UBND phường Cẩm Thượng


@contextlib.contextmanager
def _portal(served, tmp_path: Path):
    """`planflow portal` on the port the letters' links name, on the served store and plan."""
    url = served["env"]["PLANFLOW_PORTAL_URL"]
    log_path = tmp_path / "portal.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(BIN / "planflow"), "portal", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
                                 "--db", f"sqlite:///{served['store']}", "--files", str(tmp_path / "portal-files")],
                                env=served["env"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        import httpx

        def up():
            assert proc.poll() is None, f"planflow portal exited:\n{_tail(log_path)}"
            try:
                return httpx.get(f"{url}/u/x", timeout=2).status_code == 403
            except httpx.HTTPError:
                return False

        served["server"].wait_for("the portal", up, 60)
        yield log_path
    finally:
        _stop(proc, "planflow portal")


def _letters_to(served, address: str) -> list[tuple[str, str]]:
    """(subject, plain text) of every letter the SMTP server took for ``address``."""
    import email
    import email.policy

    out = []
    for envelope in served["mailbox"].envelopes:
        if address in envelope.rcpt_tos:
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            out.append((str(msg["Subject"]), msg.get_body(preferencelist=("plain",)).get_content()))
    return out


def _commune_letter_link(served) -> str:
    """The personal link in the commune's dissemination letter, as the clerk reads it."""
    for _, text in _letters_to(served, COMMUNE_MAIL):
        found = re.search(r"Đường dẫn báo cáo của đơn vị: (\S+)", text)
        if found:
            return found.group(1)
    raise AssertionError("no letter to UBND phường Cẩm Thượng carries its personal link")


def _commune_reports_through_its_link(served, tmp_path: Path) -> None:
    """A commune clerk opens the link in its letter, fills the form, attaches the signed PDF and
    sees the receipt; the engine records it at the server's time (the replay's clock), the
    automation moves the plan on, and the progress artifact counts it."""
    from playwright.sync_api import expect, sync_playwright

    server, store = served["server"], served["store"]
    link = _commune_letter_link(served)
    assert link.startswith(served["env"]["PLANFLOW_PORTAL_URL"] + "/u/")
    pdf = tmp_path / "bao-cao-phuong-cam-thuong.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n")
    advances = len(server.flow_runs("advance"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    with _portal(served, tmp_path), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, locale="vi-VN")  # a phone
            weight = []
            page.on("response", lambda r: weight.append(len(r.body())) if r.ok else None)
            opened = time.monotonic()
            page.goto(link)
            expect(page.get_by_text("UBND phường Cẩm Thượng").first).to_be_visible()
            expect(page.get_by_text("Hạn báo cáo: trước 23:59:59 ngày 02/12/2022").first).to_be_visible()
            page_weight = sum(weight)
            _shot(page, "0a-portal-form")
            for field in page.locator("input[type=number]").all():
                field.fill(field.get_attribute("max"))
            page.locator("textarea").first.fill("Đã tổ chức quán triệt đến toàn thể cán bộ, công chức phường.")
            page.set_input_files("input[type=file]", str(pdf))
            page.get_by_role("button").last.click()
            expect(page.get_by_text("Số tiếp nhận").first).to_be_visible()
            took = time.monotonic() - opened
            _shot(page, "0b-portal-receipt")
            receipt = page.inner_text("main")
        finally:
            browser.close()
    print(f"portal: link opened to receipt in {took:.1f} s; form page {page_weight / 1024:.0f} KB")
    assert page_weight < 200_000, page_weight
    assert "15/03/2022" in receipt  # received at the server's time: the replay's clock
    rows = _query(store, "select s.submitted_at, w.status from submissions s join work_items w "
                         "on w.id = s.work_item_id where w.unit_code = ?", COMMUNE_MAIL.split("@")[0])
    assert len(rows) == 1 and rows[0][0].startswith("2022-03-15 01:00:00"), rows
    # the submission's event starts advance (the automation), which refreshes the progress artifacts
    run = server.wait_for("the advance run the submission started",
                          lambda: len(server.flow_runs("advance")) > advances and server.flow_runs("advance")[-1], 60)
    assert run["created_by"]["display_value"] == f"planflow {PLAN_ID}: báo cáo đã gửi → chuyển tiếp"
    # scheduled PLANFLOW_ADVANCE_AFTER (5 s here) after the event, for the submissions meanwhile
    gathered = (dt.datetime.fromisoformat(run["expected_start_time"]) - dt.datetime.fromisoformat(run["created"]))
    assert dt.timedelta(seconds=4) <= gathered <= dt.timedelta(seconds=6), run
    assert server.wait_run(run["id"], 90)["state"]["type"] == "COMPLETED"
    progress = server.post("/artifacts/filter", {"artifacts": {"key": {"any_": [
        "hai-duong-dan-van-2022-2022-progress-communes"]}}, "sort": "CREATED_DESC", "limit": 1})
    assert progress and progress[0]["description"].startswith("UBND cấp xã: 1/235 đơn vị đã báo cáo"), progress
    # the advance run delivered the receipt letter: the number and the file's SHA-256 the page showed
    number = re.search(r"Số tiếp nhận:\s*(\S+)", receipt).group(1)
    digest = hashlib.sha256(pdf.read_bytes()).hexdigest()
    receipts = [text for subject, text in _letters_to(served, COMMUNE_MAIL) if f"số tiếp nhận {number}" in subject]
    assert len(receipts) == 1 and digest in receipts[0] and digest in receipt, _tail(served["log"])


def _a_burst_of_submissions_starts_one_run(served) -> None:
    """Many units report within PLANFLOW_ADVANCE_AFTER (5 s here) of each other, as a morning's
    portal traffic does: their events start one advance run, which moves on them all."""
    server = served["server"]
    advances = len(server.flow_runs("advance"))
    burst = ("import datetime as dt, sys\n"
             "from planflow import load_plan\n"
             "from planflow.flows.events import emit_submitted\n"
             "plan = load_plan(sys.argv[1])\n"
             "communes = [u.code for u in plan.registry.group('communes')][1:13]\n"
             "first = dt.datetime.now(dt.timezone.utc)\n"
             "for code in communes:  # twelve units' submitted events, one after the other\n"
             "    emit_submitted(plan, sys.argv[2], code, 'commune_report', dt.datetime.now(dt.timezone.utc), code)\n"
             "print((dt.datetime.now(dt.timezone.utc) - first).total_seconds())\n")
    done = subprocess.run([sys.executable, "-c", burst, str(PLAN), KEY], env=served["env"], cwd=REPO, check=True,
                          timeout=60, capture_output=True, text=True)
    assert float(done.stdout.split()[-1]) < 2, "the burst was not a burst: the test cannot tell"
    run = server.wait_for("the burst's advance run",
                          lambda: len(server.flow_runs("advance")) > advances and server.flow_runs("advance")[-1], 60)
    # scheduled 5 s after the first event, so by its end the window of every event has passed
    assert server.wait_run(run["id"], 90)["state"]["type"] == "COMPLETED"
    assert len(server.flow_runs("advance")) == advances + 1, [r["name"] for r in server.flow_runs("advance")]


def _typo_is_impossible(served) -> None:
    """A unit typed by hand is not in the list: the server refuses the run when it is created
    (no run, no worker, no incident)."""
    server = served["server"]
    before = len(server.post("/flow_runs/filter", {}))
    done = _cli_run(served, f"submit-self-evaluation/{PLAN_ID}", unit="so-tu-phapp",
                    scores=json.dumps({"g1_1": 1}), actor=SUBMITTER)
    assert done.returncode != 0 and "so-tu-phapp" in done.stdout + done.stderr, done.stdout + done.stderr
    assert len(server.post("/flow_runs/filter", {})) == before


def test_operator_runs_the_plan_from_the_prefect_ui(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from planflow.flows.operations import ScoreSheet

    started = time.monotonic()
    server, store, box = served["server"], served["store"], served["mailbox"]
    year = _year_runs_on_the_api(served, tmp_path)
    _typo_is_impossible(served)
    print(f"plan cycle and sweep done in {time.monotonic() - started:.0f} s; failed letters {year['failed']}")

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900}, locale="vi-VN")
            page.set_default_timeout(30_000)
            expect.set_options(timeout=20_000)  # a loaded 2-core machine renders slowly

            # the server asks who is there: the UI's login form takes "user:password"
            page.goto(f"{server.base}/dashboard")
            login = page.get_by_placeholder("admin:pass")
            expect(login).to_be_visible()
            login.fill(":".join(server.auth))
            page.get_by_role("button", name="Login").click()
            expect(login).to_have_count(0)

            # the Dashboard counts the failed run: the red tab's count, the run's flow under it
            page.goto(f"{server.base}/dashboard")
            expect(page.get_by_text("daily-deadline-sweep").first).to_be_visible()
            counts = server.wait_for("the Dashboard's counts", lambda: re.search(
                r"Flow Runs\s+\d+\s+total\s+(\d+)", page.inner_text("body")), 30)
            # (the runs of both failed letters may be one: the sweep's, or the sweep's and the delivery's)
            assert 1 <= int(counts.group(1)) <= len(year["red"]), (counts.group(1), [r["name"] for r in year["red"]])
            _shot(page, "1-dashboard")

            # the failed sweep: red, with what failed and what to do
            page.goto(f"{server.base}/runs/flow-run/{year['red'][0]['id']}")
            expect(page.get_by_text(year["red"][0]["name"]).first).to_be_visible()
            expect(page.get_by_text("Failed").first).to_be_visible()
            _shot(page, "2-sweep-failed")

            # Sở Y tế reports late (Mon 12/12 10:00): the unit picked from the list
            _replay_clock(served, "2022-12-12", "10:00")
            deployment = served["deployments"]["submit-self-evaluation"]
            page.goto(f"{server.base}/deployments/deployment/{deployment['id']}")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run").click()
            expect(_property(page, "Đơn vị báo cáo")).to_be_visible()
            _shot(page, "3-submit-form-empty")
            _pick(page, "Đơn vị báo cáo", SO_Y_TE)
            sent = {}
            for name, field in ScoreSheet.model_fields.items():
                top = next(m.le for m in field.metadata if hasattr(m, "le"))
                sent[name] = top - 0.5
                _property(page, field.title).locator("input[type=number]").fill(f"{top - 0.5:g}")
            first = next(iter(ScoreSheet.model_fields.values()))
            _property(page, first.title).locator("input[type=number]").fill("7")
            _property(page, "Tài liệu kiểm chứng (Optional)").locator("textarea").fill("Báo cáo số 88/BC-SYT ngày 12/12/2022")
            _property(page, "Người gửi").locator("textarea").fill(SUBMITTER)
            # above its maximum: the server refuses the run when it is created, naming the
            # criterion by its code as the form writes it (Prefect's own words, in a toast)
            refused = page.get_by_text("Validation failed for field \"scores['g1.1']\"")
            page.get_by_role("button", name="Submit").click()
            expect(refused.first).to_be_visible()
            assert "greater than the maximum of 5" in refused.first.inner_text()
            _shot(page, "4-submit-over-maximum")
            assert not server.flow_runs("submit-self-evaluation")
            # with the server's check off ("Validate parameters"), the flow refuses it in Vietnamese
            page.get_by_text("Validate parameters").click()
            page.get_by_role("button", name="Submit").click()
            own = server.wait_for("the unchecked run", lambda: server.flow_runs("submit-self-evaluation"), 30)[0]
            own = server.wait_run(own["id"], 90)
            assert (own["state"]["type"], own["state"]["name"]) == ("FAILED", "Từ chối"), own["state"]
            assert own["state"]["message"] == (
                f"Báo cáo của Sở Y tế không được ghi nhận: {first.title}: 7 điểm, vượt mức tối đa 5")
            page.goto(f"{server.base}/runs/flow-run/{own['id']}")
            expect(page.get_by_text("vượt mức tối đa 5").first).to_be_visible()
            _shot(page, "5-refused-in-vietnamese")
            page.goto(f"{server.base}/deployments/deployment/{deployment['id']}")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run").click()
            expect(_property(page, "Đơn vị báo cáo")).to_be_visible()
            _pick(page, "Đơn vị báo cáo", SO_Y_TE)
            for name, field in ScoreSheet.model_fields.items():
                _property(page, field.title).locator("input[type=number]").fill(f"{sent[name]:g}")
            _property(page, "Tài liệu kiểm chứng (Optional)").locator("textarea").fill("Báo cáo số 88/BC-SYT ngày 12/12/2022")
            _property(page, "Người gửi").locator("textarea").fill(SUBMITTER)
            page.get_by_role("button", name="Submit").click()
            submitted = server.wait_for("the submission's run", lambda: [
                r for r in server.flow_runs("submit-self-evaluation") if r["id"] != own["id"]], 30)[0]
            run = server.wait_run(submitted["id"], 90)
            assert run["state"]["type"] == "COMPLETED", (run["state"], _tail(served["log"]))
            assert run["name"] == "Báo cáo của Sở Y tế 12/12/2022 10:00"
            assert run["parameters"]["unit"] == SO_Y_TE
            page.goto(f"{server.base}/runs/flow-run/{run['id']}")
            expect(page.get_by_text("Đã nhận báo cáo tự đánh giá của Sở Y tế (so-y-te) lúc 12/12/2022 10:00").first
                   ).to_be_visible()
            _shot(page, "6-submission-run")
            row = _query(store, "select s.submitted_at, s.payload, w.late from submissions s "
                                "join work_items w on w.id = s.work_item_id where s.unit_code = 'so-y-te'")
            assert len(row) == 1 and row[0][0].startswith("2022-12-12 03:00:00") and row[0][2] == 1
            assert json.loads(row[0][1])["scores"] == {k.replace("_", "."): v for k, v in sent.items()}
            assert _query(store, "select actor from audit where action = 'task.submitted' "
                                 "and unit_code = 'so-y-te'") == [(SUBMITTER,)]

            # the re-trigger, picked from the lists, once the district's mailbox takes mail again
            box.refuse.clear()
            failed_steps = sorted(year["failed"])
            deployment = served["deployments"]["retrigger-step"]
            page.goto(f"{server.base}/deployments/deployment/{deployment['id']}")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run").click()
            expect(_property(page, "Bước (Optional)")).to_be_visible()
            if failed_steps == ["commune_self_evaluation"]:
                _pick(page, "Bước (Optional)", COMMUNE_STEP)
            # one unit, every step: the letters to (or about) UBND huyện Bình Giang
            _pick(page, "Đơn vị (Optional)", "UBND huyện Bình Giang (ubnd-huyen-binh-giang)")
            _property(page, "Lý do").locator("textarea").fill("Hộp thư của UBND huyện Bình Giang đã nhận thư trở lại")
            _property(page, "Người thực hiện").locator("textarea").fill(OPERATOR)
            _shot(page, "7-retrigger-form")
            page.get_by_role("button", name="Submit").click()
            again = server.wait_for("the re-trigger's run", lambda: server.flow_runs("retrigger-step"), 30)[0]
            again = server.wait_run(again["id"], 120)
            assert again["state"]["type"] == "COMPLETED", (again["state"], _tail(served["log"]))
            assert again["name"] == "Chạy lại bước 12/12/2022 10:00"
            assert _query(store, "select count(*) from outbox where status = 'failed'") == [(0,)]
            resent = server.post("/artifacts/filter", {"artifacts": {"key": {"any_": [
                "hai-duong-dan-van-2022-2022-retrigger"]}, "flow_run_id": {"any_": [again["id"]]}}})
            rows = resent[0]["data"] if isinstance(resent[0]["data"], list) else json.loads(resent[0]["data"])
            assert len(rows) == sum(year["failed"].values()) and {r["Kết quả"] for r in rows} == {"Đã gửi"}
            page.goto(f"{server.base}/artifacts/artifact/{resent[0]['id']}")
            expect(page.get_by_text("Đã gửi").first).to_be_visible()
            _shot(page, "8-retrigger-artifact")

            # the tables an operator scans, without scrolling right at 1440x900
            for what in ("units", "overdue"):
                found = server.post("/artifacts/filter", {"artifacts": {"key": {"any_": [
                    f"hai-duong-dan-van-2022-2022-{what}"]}}, "sort": "CREATED_DESC", "limit": 1})
                assert found, what
                page.goto(f"{server.base}/artifacts/artifact/{found[0]['id']}")
                table = page.locator("table").first
                expect(table).to_be_visible()
                headers = [h.strip() for h in table.locator("th").all_inner_texts()]
                assert headers[:4] == ["Đơn vị", "Huyện", "Tình trạng", "Đôn đốc"], (what, headers)
                # name, district, status and level are in view without scrolling right
                right = table.evaluate("t => t.parentElement.getBoundingClientRect().right")
                edges = table.locator("th").evaluate_all("hs => hs.slice(0, 4).map(h => h.getBoundingClientRect().right)")
                _shot(page, f"9-{what}-table")
                assert max(edges) <= right, (what, edges, right, headers)

            # where the plan stands, drawn on its diagram (issue 14): the latest of the instance
            found = server.post("/artifacts/filter", {"artifacts": {"key": {"any_": [
                "hai-duong-dan-van-2022-2022-diagram"]}}, "sort": "CREATED_DESC", "limit": 1})
            assert found and re.search(r"\*\*\d+/265 đơn vị đã báo cáo", found[0]["data"]), found
            page.goto(f"{server.base}/artifacts/artifact/{found[0]['id']}")
            picture = page.locator('img[src^="data:image/svg+xml"]').first
            expect(picture).to_be_visible()
            assert picture.evaluate("i => i.complete && i.naturalWidth") > 1000  # the SVG was decoded
            expect(page.get_by_text("Có đơn vị quá hạn").first).to_be_visible()
            _shot(page, "9c-diagram-artifact")

            # the charts of progress, drawn as SVG: both pictures shown, their words readable
            found = server.post("/artifacts/filter", {"artifacts": {"key": {"any_": [
                "hai-duong-dan-van-2022-2022-charts"]}}, "sort": "CREATED_DESC", "limit": 1})
            assert found, "no charts artifact"
            page.goto(f"{server.base}/artifacts/artifact/{found[0]['id']}")
            charts = page.locator('img[src^="data:image/svg+xml"]')
            expect(charts.nth(1)).to_be_visible()
            assert charts.evaluate_all("cs => cs.map(c => c.complete && c.naturalWidth)") == [1000, 1000]
            _shot(page, "9d-charts-artifact")

            # Ban Dân vận's decision, with its reviewer: the closings of 19/12 bring the report
            _replay_clock(served, "2022-12-19", "08:00")
            closing = server.wait_run(_deployment_run(served, f"daily-deadline-sweep/{PLAN_ID}"), 150)
            assert closing["name"] == "Quét hạn 19/12/2022 08:00"
            assert _query(store, "select count(*) from work_items where status = 'open' and element_id = 'review'"
                          ) == [(1,)], (closing["state"], _tail(served["log"]))
            deployment = served["deployments"]["review-decision"]
            page.goto(f"{server.base}/deployments/deployment/{deployment['id']}")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run").click()
            _pick(page, "Ý kiến thẩm định", "Thống nhất")
            _property(page, "Người thẩm định (họ tên, chức vụ)").locator("textarea").fill(REVIEWER)
            _property(page, "Ý kiến (Optional)").locator("textarea").fill("Thống nhất với kết quả tổng hợp")
            _shot(page, "10-review-form")
            page.get_by_role("button", name="Submit").click()
            decided = server.wait_for("the review's run", lambda: server.flow_runs("review-decision"), 30)[0]
            decided = server.wait_run(decided["id"], 90)
            assert decided["state"]["type"] == "COMPLETED", (decided["state"], _tail(served["log"]))
            assert _query(store, "select actor from audit where action = 'task.submitted' "
                                 "and unit_code = 'ban-dan-van-tinh-uy'") == [(REVIEWER,)]
            page.goto(f"{server.base}/runs/flow-run/{decided['id']}")
            expect(page.get_by_text("người thẩm định: " + REVIEWER).first).to_be_visible()
            _shot(page, "11-review-run")
            report = server.wait_for("the report quoting the reviewer", lambda: [
                a for a in server.post("/artifacts/filter", {"artifacts": {"key": {"any_": [
                    "hai-duong-dan-van-2022-2022-report"]}}, "sort": "CREATED_DESC", "limit": 3})
                if REVIEWER in (a["data"] or "")], 90)[0]
            assert "Thống nhất với kết quả tổng hợp" in report["data"]
            page.goto(f"{server.base}/artifacts/artifact/{report['id']}")
            expect(page.get_by_text(REVIEWER).first).to_be_visible()
            _shot(page, "12-report-with-review")
        except Exception:
            for p in browser.contexts[0].pages if browser.contexts else []:
                p.screenshot(path=SHOTS / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
    # no incident letter for the refused input: the only incident is the sweep's
    incidents = server.flow_runs("record-incident")
    assert {r["parameters"]["flow_run"] for r in incidents} == {r["name"] for r in year["red"]}
    # in a 2022 replay, every date in a run's name is 2022's
    names = [r["name"] for r in server.post("/flow_runs/filter", {})]
    assert set().union(*(_years(n) for n in names)) == {"2022"}, names
    print(f"browser test done in {time.monotonic() - started:.0f} s")
