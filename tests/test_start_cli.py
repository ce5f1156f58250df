"""`planflow start` and a late first `planflow sweep`, from the shell as an operator without
the UI runs them: subprocesses against a real store, under the session's Prefect API."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from planflow import store as s
from tests.conftest import PLAN

KEY = "hai-duong-dan-van-2022/2022"
OPERATOR = "so-noi-vu:tran-thi-b"


def planflow(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "planflow.flows.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def operator_env(**extra) -> dict:
    """The operator's shell: the Prefect API they use, their user name, no planflow settings."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PLANFLOW_") and k != "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"}
    api = PREFECT_API_URL.value()  # the session's harness, when the test uses it
    return {**env, **({"PREFECT_API_URL": api} if api else {}), "USER": OPERATOR, **extra}


def kinds(folder: Path, names: set[str]) -> Counter:
    return Counter(email.message_from_bytes((folder / n).read_bytes(), policy=email.policy.default)["X-Planflow-Kind"]
                   for n in names)


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_start_then_a_late_first_sweep_sends_at_most_one_escalation_per_unit(db_url, tmp_path, plan):
    env = operator_env()
    started = planflow("start", str(PLAN), "--as-of", "2022-03-15T08:00:00+07:00", "--db", db_url,
                       cwd=tmp_path, env=env)
    assert started.returncode == 0, started.stderr
    assert KEY in started.stdout and "reported 0/265 units asked" in started.stdout
    assert "clock 2022-03-15T08:00:00+07:00" in started.stdout
    outbox = tmp_path / "out" / "outbox"
    disseminated = {p.name for p in outbox.glob("*.eml")}
    assert len(disseminated) == len(plan.registry.group("recipients")) + len(plan.registry.group("communes")) == 275
    db = s.connect(db_url)
    with db.connect() as conn:
        clock_set = conn.execute(select(s.audit).where(s.audit.c.action == "clock.set")).one()
        replay = conn.execute(select(s.instances.c.replay).where(s.instances.c.key == KEY)).scalar_one()
    assert clock_set.actor == OPERATOR and "planflow start" in clock_set.detail["reason"] and replay

    # started again (the operator is not sure it ran): nothing more is sent
    again = planflow("start", str(PLAN), "--as-of", "2022-03-15T08:00:00+07:00", "--db", db_url,
                     cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert {p.name for p in outbox.glob("*.eml")} == disseminated

    # nobody reported and no sweep ran all year: the first one comes on 16/12, every rung past due
    swept = planflow("sweep", "--definition", str(PLAN), "--as-of", "2022-12-16T09:00:00+07:00", "--db", db_url,
                     cwd=tmp_path, env=env)
    assert swept.returncode == 0, swept.stderr
    out = swept.stdout + swept.stderr
    assert "superseded" in out and "1030 rung(s) of 253 unit(s)" in out
    new = {p.name for p in outbox.glob("*.eml")} - disseminated
    assert kinds(outbox, new) == Counter({"escalation-final": 28})  # not 819: three levels and reminders each
    with db.connect() as conn:
        chased = Counter(conn.scalars(select(s.chases.c.unit_code)))
        letters = conn.execute(select(s.outbox.c.recipient, s.outbox.c.unit_code, s.outbox.c.level, s.outbox.c.context)
                               .where(s.outbox.c.kind != "dissemination")).all()
    assert len(chased) == 253 and set(chased.values()) == {1}
    levels: dict[str, set] = {}
    listed = Counter()
    for recipient, unit, level, context in letters:
        for code in [unit] if unit else [u["code"] for u in context["units"]]:
            levels.setdefault(code, set()).add(level)
            listed[(recipient, code)] += 1
    assert set(levels) == set(chased) and all(len(v) == 1 for v in levels.values())
    assert set(listed.values()) == {1}

    # the same sweep again (a retry, a second operator) adds nothing
    repeat = planflow("sweep", "--definition", str(PLAN), "--as-of", "2022-12-16T09:00:00+07:00", "--db", db_url,
                      cwd=tmp_path, env=env)
    assert repeat.returncode == 0, repeat.stderr
    assert {p.name for p in outbox.glob("*.eml")} - disseminated == new


@pytest.mark.parametrize("args, expected", [
    (["--as-of", "2022-03-15T08:00:00"], "needs a UTC offset"),
    (["--as-of", "15/03/2022"], "is not an ISO 8601 datetime"),
    ([], "cannot start live on today's clock"),
])
def test_start_refuses_what_it_cannot_do_before_writing_anything(tmp_path, args, expected):
    store = tmp_path / "store" / "planflow.db"
    done = planflow("start", str(PLAN), *args, "--db", f"sqlite:///{store}", cwd=tmp_path, env=operator_env())
    assert done.returncode == 1
    assert expected in done.stderr
    assert not store.parent.exists() and not (tmp_path / "out").exists()


def test_start_names_a_definition_that_is_not_there(tmp_path):
    done = planflow("start", str(tmp_path / "missing.yaml"), "--as-of", "2022-03-15T08:00:00+07:00",
                    "--db", f"sqlite:///{tmp_path / 'p.db'}", cwd=tmp_path, env=operator_env())
    assert done.returncode == 1 and "missing.yaml" in done.stderr
    assert not (tmp_path / "p.db").exists()
