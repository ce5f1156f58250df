"""The outbox delivered exactly once: retries, incidents, claims, against a real SMTP server.

Each test builds a small engine state (the shipped plan, its ``disseminate`` step run:
40 pending rows) and delivers it with ``flows.delivery.deliver_pending`` to an aiosmtpd
server on 127.0.0.1 that the test starts and stops itself, on a free port.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import os
import socket
import subprocess
import sys
import threading
from collections import Counter

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select, update

from tests.conftest import PLAN, REPO
from tests.smtp import Mailbox, free_port

TZ = dt.timezone(dt.timedelta(hours=7))
AS_OF = dt.datetime(2022, 3, 15, 8, 0, tzinfo=TZ)
REFUSED = "so-y-te@hai-duong.example.org"
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def smtp(monkeypatch):
    """``start(port=None, **kw)`` runs a server on 127.0.0.1 and points PLANFLOW_SMTP_* at it."""
    controllers = []
    for name in ("USER", "PASSWORD", "PASSWORD_BLOCK", "TIMEOUT", "ALLOW_PLAINTEXT_LOGIN"):
        monkeypatch.delenv(f"PLANFLOW_SMTP_{name}", raising=False)
    monkeypatch.setenv("PLANFLOW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PLANFLOW_SMTP_SECURITY", "none")
    monkeypatch.setenv("PLANFLOW_SMTP_TIMEOUT", "5")

    def point_at(port: int) -> None:
        monkeypatch.setenv("PLANFLOW_SMTP_PORT", str(port))

    def start(port: int | None = None, mailbox: Mailbox | None = None, **kwargs):
        mailbox = mailbox or Mailbox()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port or free_port(), **kwargs)
        controller.start()
        controllers.append(controller)
        point_at(controller.port)
        return mailbox, controller

    start.point_at = point_at
    yield start
    for controller in controllers:
        try:
            controller.stop()
        except AssertionError:  # stopped by the test already
            pass


@pytest.fixture
def state(db_url, tmp_path):
    """The shipped plan started on 15/3/2022 08:00 with its dissemination queued: 40 rows."""
    from planflow import Engine, connect, load_plan
    from planflow.flows.runtime import RunRef

    plan = load_plan(PLAN)
    engine = Engine(plan, connect(db_url))
    key = f"{plan.id}/2022/outbox-test"
    root = engine.start(key, AS_OF)
    engine.advance(AS_OF, root_id=root)
    (step,) = [s for s in engine.ready_steps(root_id=root) if s.element_id == "disseminate"]
    assert engine.run_step(step.token_ids, AS_OF) == 1
    ref = RunRef(definition=str(PLAN), db_url=db_url, root_key=key, outbox_dir=str(tmp_path / "outbox"))
    assert len(_rows(db_url)) == 40
    return ref, plan


class Sessions(Mailbox):
    """A mailbox that also counts the SMTP connections (sessions) it was sent mail on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sessions: list[tuple] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if session.peer not in self.sessions:
            self.sessions.append(session.peer)
        return responses


def _rows(db_url):
    from planflow import connect
    from planflow import store as s

    with connect(db_url).connect() as conn:
        return conn.execute(select(s.outbox).order_by(s.outbox.c.id)).all()


def _audit(db_url, action):
    from planflow import connect
    from planflow import store as s

    with connect(db_url).connect() as conn:
        return conn.execute(select(s.audit).where(s.audit.c.action == action)).all()


def _set(db_url, row_id, **values):
    from planflow import connect
    from planflow import store as s

    with connect(db_url).begin() as conn:
        conn.execute(update(s.outbox).where(s.outbox.c.id == row_id).values(**values))


def _addresses(plan) -> set[str]:
    return {u.email for u in plan.registry.group("recipients")}


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "planflow.flows.cli", *args], cwd=REPO, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)


# --- (a) every row once, Vietnamese intact --------------------------------------------------


def test_all_forty_delivered_once_with_vietnamese_subjects(state, smtp, db_url):
    from planflow import connect, outbox
    from planflow.flows.delivery import deliver_pending
    from planflow.notifications import message_id_for, render

    ref, plan = state
    mailbox, _ = smtp()
    assert deliver_pending(ref, AS_OF) == 40
    assert mailbox.per_recipient() == Counter({a: 1 for a in _addresses(plan)})
    rows = {message_id_for(r.key): r for r in _rows(db_url)}
    db = connect(db_url)
    for envelope in mailbox.envelopes:
        raw = envelope.original_content or envelope.content
        raw.decode("ascii")  # 7-bit clean: RFC 2047 headers, quoted-printable bodies
        assert b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0]  # RFC 2047 encoded words in the headers
        received = email.message_from_bytes(raw, policy=email.policy.default)
        row = rows[received["Message-ID"]]  # the Message-ID is a digest of the outbox key
        expected = render(row.kind, outbox.render_context(plan, row, db), template_dir=plan.template_dir).subject
        assert received["Subject"] == expected
        assert "Kế hoạch" in received["Subject"] or "kế hoạch" in received["Subject"]
        assert received["To"] == plan.registry.get(row.recipient).email
        assert "Kính gửi" in received.get_body(("plain",)).get_content()
    assert {(r.status, r.attempts, r.sent_at) for r in _rows(db_url)} == {("sent", 1, AS_OF)}
    assert deliver_pending(ref, AS_OF) == 0
    assert len(mailbox.envelopes) == 40


# --- (b) server down, then up -----------------------------------------------------------------


@sqlite_only
def test_server_down_keeps_rows_pending_then_delivers_each_once(state, smtp, db_url):
    from planflow.flows.delivery import NotDeliveredYet, deliver_pending

    ref, plan = state
    port = free_port()
    smtp.point_at(port)  # nothing listens there yet
    with pytest.raises(NotDeliveredYet, match="40 notification"):
        deliver_pending(ref, AS_OF)
    rows = _rows(db_url)
    assert {(r.status, r.attempts) for r in rows} == {("pending", 1)}
    assert all("refused the connection" in r.last_error for r in rows)

    mailbox, _ = smtp(port=port)
    assert deliver_pending(ref, AS_OF) == 40
    assert mailbox.per_recipient() == Counter({a: 1 for a in _addresses(plan)})
    assert {(r.status, r.attempts) for r in _rows(db_url)} == {("sent", 2)}
    assert deliver_pending(ref, AS_OF) == 0
    assert len(mailbox.envelopes) == 40


@sqlite_only
def test_rows_out_of_attempts_become_incidents(state, smtp, db_url, monkeypatch):
    from planflow.status import instances_status
    from planflow.flows.delivery import NotDeliveredYet, deliver_pending

    ref, _ = state
    monkeypatch.setenv("PLANFLOW_OUTBOX_MAX_ATTEMPTS", "2")
    smtp.point_at(free_port())
    with pytest.raises(NotDeliveredYet):
        deliver_pending(ref, AS_OF)
    assert deliver_pending(ref, AS_OF) == 0  # the last attempt: incidents, not an error
    assert {(r.status, r.attempts) for r in _rows(db_url)} == {("failed", 2)}
    assert len(_audit(db_url, "notification.failed")) == 40
    (inst,) = instances_status(db_url)
    assert len(inst["incidents"]) == 40
    assert "after 2 attempt(s)" in inst["incidents"][0]


# --- (c) a refused address is an incident; fixed, --retry delivers it once ----------------------


def test_refused_address_is_an_incident_listed_and_retried(state, smtp, db_url):
    from planflow.status import instances_status
    from planflow.flows.delivery import deliver_pending

    ref, plan = state
    mailbox, _ = smtp(mailbox=Sessions(refuse=(REFUSED,)))
    assert deliver_pending(ref, AS_OF) == 39  # a permanent failure does not raise
    assert len(mailbox.sessions) == 1  # the refusal did not cost the batch its connection
    rows = {r.recipient: r for r in _rows(db_url)}
    assert rows["so-y-te"].status == "failed" and rows["so-y-te"].attempts == 1
    assert "550" in rows["so-y-te"].last_error
    assert Counter(r.status for r in rows.values()) == {"sent": 39, "failed": 1}
    assert REFUSED not in mailbox.per_recipient()
    (inst,) = instances_status(db_url)
    assert len(inst["incidents"]) == 1 and "so-y-te" in inst["incidents"][0]

    listed = _cli("notifications", "--db", db_url)
    assert listed.returncode == 0, listed.stderr
    assert "so-y-te" in listed.stdout and REFUSED in listed.stdout and "550" in listed.stdout
    assert "39 sent" in listed.stdout and "1 failed" in listed.stdout

    mailbox.refuse.clear()  # the mailbox exists now
    retried = _cli("notifications", "--db", db_url, "--retry", "--actor", "chuyen-vien-snv",
                   "--reason", "hộp thư đã được tạo lại")
    assert retried.returncode == 0, retried.stderr + retried.stdout
    assert "sent #" in retried.stdout and "so-y-te" in retried.stdout
    assert mailbox.per_recipient() == Counter({a: 1 for a in _addresses(plan)})
    row = {r.recipient: r for r in _rows(db_url)}["so-y-te"]
    assert (row.status, row.attempts) == ("sent", 1)
    (audit,) = _audit(db_url, "notification.retried")
    assert audit.actor == "chuyen-vien-snv" and audit.unit_code == "so-y-te"
    assert audit.detail["reason"] == "hộp thư đã được tạo lại" and "550" in audit.detail["previous_error"]

    again = _cli("notifications", "--db", db_url, "--retry")
    assert again.returncode == 0 and "Nothing to retry" in again.stdout
    assert len(mailbox.envelopes) == 40
    assert instances_status(db_url)[0]["incidents"] == []


@sqlite_only
def test_retry_that_fails_again_stays_an_incident(state, smtp, db_url):
    from planflow.flows.delivery import deliver_pending

    ref, _ = state
    mailbox, _ = smtp(mailbox=Mailbox(refuse=(REFUSED,)))
    deliver_pending(ref, AS_OF)
    retried = _cli("notifications", "--db", db_url, "--retry")
    assert retried.returncode == 1
    assert "failed #" in retried.stdout and "550" in retried.stdout
    row = {r.recipient: r for r in _rows(db_url)}["so-y-te"]
    assert (row.status, row.attempts) == ("failed", 1)
    assert len(_audit(db_url, "notification.retried")) == 1
    assert len(_audit(db_url, "notification.failed")) == 2


@sqlite_only
def test_retry_with_a_broken_configuration_requeues_nothing(state, smtp, db_url, monkeypatch):
    from planflow.flows.delivery import deliver_pending

    ref, _ = state
    smtp(mailbox=Mailbox(refuse=(REFUSED,)))
    deliver_pending(ref, AS_OF)
    monkeypatch.setenv("PLANFLOW_SMTP_SECURITY", "tls")
    retried = _cli("notifications", "--db", db_url, "--retry")
    assert retried.returncode == 1 and "PLANFLOW_SMTP_SECURITY" in retried.stderr
    assert {r.recipient: r for r in _rows(db_url)}["so-y-te"].status == "failed"
    assert _audit(db_url, "notification.retried") == []


# --- (d) two deliverers at once ------------------------------------------------------------------


def test_two_deliverers_at_once_send_each_row_once(state, smtp, db_url):
    from planflow.flows.delivery import deliver_pending

    ref, plan = state
    mailbox, _ = smtp(mailbox=Mailbox(delay=0.01))
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(deliver_pending(ref, AS_OF))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sum(results) == 40
    assert mailbox.per_recipient() == Counter({a: 1 for a in _addresses(plan)})
    # every row claimed once: a row claimed twice would count two attempts
    assert {(r.status, r.attempts) for r in _rows(db_url)} == {("sent", 1)}
    assert len({r.claimed_by for r in _rows(db_url)}) == len([n for n in results if n])


# --- leases: a row left 'sending' by a dead deliverer -------------------------------------------


@sqlite_only
def test_rows_left_sending_are_taken_over_after_the_lease_or_when_the_claimant_died(state, smtp, db_url):
    from planflow.status import instances_status
    from planflow.flows.delivery import deliver_pending

    ref, plan = state
    mailbox, _ = smtp()
    now = dt.datetime.now(dt.timezone.utc)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lapsed, live, gone = [r.id for r in _rows(db_url)[:3]]
    _set(db_url, lapsed, status="sending", attempts=1, claimed_at=now - dt.timedelta(minutes=11),
         claimed_by="another-host:4242:abcd")
    _set(db_url, live, status="sending", attempts=1, claimed_at=now, claimed_by="another-host:4242:beef")
    _set(db_url, gone, status="sending", attempts=1, claimed_at=now,
         claimed_by=f"{socket.gethostname()}:{dead.pid}:cafe")
    incidents = instances_status(db_url)[0]["incidents"]
    assert len(incidents) == 1 and f"#{lapsed} " in incidents[0] and "left sending" in incidents[0]

    assert deliver_pending(ref, AS_OF) == 39
    rows = {r.id: r for r in _rows(db_url)}
    assert (rows[lapsed].status, rows[lapsed].attempts) == ("sent", 2)
    assert (rows[gone].status, rows[gone].attempts) == ("sent", 2)
    assert rows[live].status == "sending"  # its deliverer may still be at work
    assert len(mailbox.envelopes) == 39


@sqlite_only
def test_a_row_taken_over_is_not_written_twice_by_the_file_channel(state, db_url, monkeypatch, tmp_path, caplog):
    """The deliverer wrote a letter's file and died before marking its row: the row, left
    ``sending``, is taken over and delivered again — and the file channel writes no second
    copy: the first file stays as it was (same bytes, same time), no other file appears."""
    import time

    from planflow.flows.delivery import deliver_pending

    monkeypatch.delenv("PLANFLOW_SMTP_HOST", raising=False)
    ref, _ = state
    folder = tmp_path / "outbox"
    assert deliver_pending(ref, AS_OF) == 40
    first = _rows(db_url)[0]
    _set(db_url, first.id, status="sending", sent_at=None,
         claimed_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1), claimed_by="dead-host:1:dead")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    time.sleep(0.01)
    later = AS_OF + dt.timedelta(days=1)  # a later Date header, were the letter built again
    with caplog.at_level("INFO"):
        assert deliver_pending(ref, later) == 1
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert after == before and len(after) == 40
    assert "taking over from dead-host:1:dead" in caplog.text and "not written again" in caplog.text
    row = {r.id: r for r in _rows(db_url)}[first.id]
    assert (row.status, row.attempts, row.sent_at) == ("sent", 2, later)


@sqlite_only
def test_a_row_taken_over_goes_again_by_smtp_with_the_same_message_id(state, smtp, db_url):
    """SMTP cannot un-send: a row taken over is sent again, with the same Message-ID, so the
    receiving side can drop the repeat (README, "Notifications")."""
    from planflow.flows.delivery import deliver_pending

    ref, _ = state
    mailbox, _ = smtp(mailbox=Sessions())
    assert deliver_pending(ref, AS_OF) == 40
    first = _rows(db_url)[0]
    _set(db_url, first.id, status="sending", claimed_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1),
         claimed_by="dead-host:1:dead")
    assert deliver_pending(ref, AS_OF) == 1
    ids = Counter(email.message_from_bytes(e.content, policy=email.policy.default)["Message-ID"]
                  for e in mailbox.envelopes)
    assert len(mailbox.envelopes) == 41 and len(ids) == 40
    (repeated, times), = [(i, n) for i, n in ids.items() if n > 1]
    assert times == 2
    assert len(mailbox.sessions) == 2  # one connection per delivery run, not one per letter


def test_one_smtp_connection_per_delivery_batch(state, smtp, db_url):
    from planflow.flows.delivery import deliver_pending

    ref, plan = state
    mailbox, _ = smtp(mailbox=Sessions())
    assert deliver_pending(ref, AS_OF) == 40
    assert len(mailbox.envelopes) == 40 and len(mailbox.sessions) == 1


@sqlite_only
def test_a_server_that_closes_the_connection_gets_a_new_one_for_the_next_letter(state, smtp, db_url):
    """The server hangs up after each letter (a limit of one message per session): the batch
    opens a new connection for the next letter, and every letter goes once."""
    from planflow.flows.delivery import deliver_pending

    class OnePerSession(Sessions):
        async def handle_DATA(self, server, session, envelope):
            reply = await super().handle_DATA(server, session, envelope)
            asyncio.get_running_loop().call_soon(server.transport.close)  # once the reply is out
            return reply

    ref, plan = state
    mailbox, _ = smtp(mailbox=OnePerSession())
    assert deliver_pending(ref, AS_OF) == 40
    assert mailbox.per_recipient() == Counter({a: 1 for a in _addresses(plan)})
    assert len(mailbox.sessions) == 40


@sqlite_only
def test_a_ref_without_root_key_delivers_every_instance_of_its_definition(state, smtp, db_url):
    from planflow.flows.delivery import deliver_pending

    ref, plan = state
    mailbox, _ = smtp()
    assert deliver_pending(ref.model_copy(update={"root_key": ""}), AS_OF) == 40
    assert mailbox.per_recipient() == Counter({a: 1 for a in _addresses(plan)})


# --- settings --------------------------------------------------------------------------------------


def test_delivery_task_retries_with_exponential_backoff():
    from planflow.flows.stages import deliver_notifications

    assert deliver_notifications.retries == 4  # PLANFLOW_OUTBOX_MAX_ATTEMPTS (5) - 1
    assert deliver_notifications.retry_delay_seconds == [10.0, 20.0, 40.0, 80.0]


def test_bad_settings_are_named(monkeypatch):
    from planflow import outbox

    monkeypatch.setenv("PLANFLOW_OUTBOX_MAX_ATTEMPTS", "zero")
    with pytest.raises(ValueError, match="PLANFLOW_OUTBOX_MAX_ATTEMPTS"):
        outbox.max_attempts()
    monkeypatch.setenv("PLANFLOW_OUTBOX_MAX_ATTEMPTS", "0")
    with pytest.raises(ValueError, match="at least 1"):
        outbox.max_attempts()
    monkeypatch.setenv("PLANFLOW_OUTBOX_LEASE_SECONDS", "90")
    assert outbox.lease() == dt.timedelta(seconds=90)


# --- under Prefect: the task's retries, a Secret block for the password ------------------------------


@sqlite_only
def test_prefect_task_retries_until_the_server_is_up(prefect_harness, state, smtp, db_url):
    from prefect import flow
    from prefect.client.orchestration import get_client

    from planflow.flows.stages import deliver_notifications

    ref, plan = state
    port = free_port()
    smtp.point_at(port)
    started = []

    def server_comes_up(task, task_run, state):
        # runs between two attempts of the task: the first one found nothing listening
        if not started:
            started.append(smtp(port=port)[0])
        return True

    @flow(name="deliver-test")
    async def deliver_flow():
        runner = deliver_notifications.with_options(retry_delay_seconds=0, retry_condition_fn=server_comes_up)
        return runner(ref, AS_OF, return_state=True)

    state_ = asyncio.run(deliver_flow())
    assert state_.is_completed() and state_.result() == 40
    (mailbox,) = started
    assert mailbox.per_recipient() == Counter({a: 1 for a in _addresses(plan)})
    assert {(r.status, r.attempts) for r in _rows(db_url)} == {("sent", 2)}

    async def run_count():
        async with get_client() as client:
            return (await client.read_task_run(state_.state_details.task_run_id)).run_count

    assert asyncio.run(run_count()) == 2


@sqlite_only
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_smtp_password_from_a_prefect_secret_block(prefect_harness, state, smtp, db_url, monkeypatch, caplog):
    from prefect import flow
    from prefect.blocks.system import Secret

    from planflow.flows.delivery import deliver_pending
    from planflow.flows.stages import deliver_notifications

    ref, _ = state
    password = "mat-khau-bi-mat-2022"
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == password.encode())

    Secret(value=password).save("planflow-smtp-test", overwrite=True)
    mailbox, _ = smtp(mailbox=Sessions(), authenticator=authenticator, auth_required=True, auth_require_tls=False)
    monkeypatch.setenv("PLANFLOW_SMTP_USER", "planflow")
    monkeypatch.setenv("PLANFLOW_SMTP_PASSWORD", "not-this-one")
    monkeypatch.setenv("PLANFLOW_SMTP_PASSWORD_BLOCK", "planflow-smtp-test")
    # this test server has no TLS: a login in clear is refused until the operator allows it
    with pytest.raises(ValueError, match="PLANFLOW_SMTP_ALLOW_PLAINTEXT_LOGIN"):
        deliver_pending(ref, AS_OF)
    assert logins == [] and {r.status for r in _rows(db_url)} == {"pending"}
    monkeypatch.setenv("PLANFLOW_SMTP_ALLOW_PLAINTEXT_LOGIN", "1")

    @flow(name="deliver-with-secret")
    async def deliver_flow():
        return deliver_notifications(ref, AS_OF)  # the block is read inside the (sync) task

    with caplog.at_level("DEBUG"):
        assert asyncio.run(deliver_flow()) == 40
    assert len(mailbox.envelopes) == 40 and logins == [(b"planflow", password.encode())]  # one login
    assert len(mailbox.sessions) == 1
    assert password not in caplog.text

    monkeypatch.setenv("PLANFLOW_SMTP_PASSWORD_BLOCK", "no-such-block")
    _set(db_url, _rows(db_url)[0].id, status="pending")
    with pytest.raises(ValueError, match="no-such-block"):
        deliver_pending(ref, AS_OF)
