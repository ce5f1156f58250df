"""Where the deployed flows work, fixed by the environment they run in, and the plan moment
they act for.

Nothing a caller sends chooses the definition, the store or the instance: they are read from
``PLANFLOW_DEFINITION``, ``PLANFLOW_DATABASE_URL`` and ``PLANFLOW_OUTBOX_DIR``; the instance
is the definition's year. Time is the instance's clock (``planflow.clock``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from planflow import connect
from planflow.plan_cache import cached_plan
from planflow.plan_versions import years
from planflow.plan_years import this_year
from planflow.clock import now_of, real_now
from planflow.flows.runtime import RunRef, engine_for
from planflow.flows.served_plans import SHIPPED_DEFINITION, served_definition  # noqa: F401
from planflow.notifications.vn_format import short_datetime


class OperatorError(ValueError):
    """A refusal an operator can act on (in Vietnamese): the run ends "Từ chối", nothing written,
    and no incident is recorded for it."""


def definition_path() -> str:
    """The definition the current run works for: ``PLANFLOW_DEFINITION`` (a file, or a folder of
    plans told apart by the run's deployment: ``served_plans``), else the shipped plan."""
    return served_definition()


def instance_key(plan, year: int | None = None) -> str:
    return f"{plan.id}/{year or plan.definition.year}"


def current_year(plan, db_url: str) -> int:
    """The year the operators' flows act on: a plan of a fixed year, that year; a plan of every
    year, its newest running instance's, else its newest instance's, else this year's."""
    if not plan.every_year:
        return plan.year
    db = connect(db_url)
    started = years(db, plan.id, running=True) or years(db, plan.id)
    return started[-1] if started else this_year(plan.calendar.tz)


def current_key(plan, db_url: str, year: int | None = None) -> str:
    """The key of the plan's instance of ``year``; not said, of the current year (``current_year``):
    the one rule for the deployed flows and the commands that act on a store (links, diagram)."""
    return instance_key(plan, year or current_year(plan, db_url))


def plan_ref(year: int | None = None) -> RunRef:
    """Where the deployed flows work, read from the environment they run in; the instance is
    the plan's of ``year``, the current one (``current_year``) when not said."""
    plan = cached_plan(definition_path())
    db_url = os.environ.get("PLANFLOW_DATABASE_URL") or f"sqlite:///{Path.cwd() / 'out' / 'planflow.db'}"
    return RunRef(definition=str(plan.path), db_url=db_url, root_key=current_key(plan, db_url, year),
                  outbox_dir=os.environ.get("PLANFLOW_OUTBOX_DIR", str(Path.cwd() / "out" / "outbox")))


def running_refs(ref: RunRef) -> list[RunRef]:
    """The references of every running instance of the plan (the sweep's work), ``ref`` among them."""
    plan = cached_plan(ref.definition)
    running = years(connect(ref.db_url), plan.id, running=True) if plan.every_year else []
    keys = dict.fromkeys([ref.root_key, *(instance_key(plan, y) for y in running)])
    return [ref.model_copy(update={"root_key": key}) for key in keys]


def started(ref: RunRef):
    """The engine of the plan's instance, and the instance's now; refused before it starts."""
    engine = engine_for(ref)
    if engine.instance_id(ref.root_key) is None:
        raise OperatorError(f"Kế hoạch '{ref.root_key}' chưa bắt đầu: chạy plan-cycle trước "
                            "(với năm đã qua: đặt đồng hồ chạy lại bằng set-replay-clock trước)")
    return engine, now_of(engine, ref.root_key)


def named_actor(actor: str | None, what: str = "Người thực hiện") -> str:
    if not (actor or "").strip():
        raise OperatorError(f"{what}: ghi họ tên người thực hiện (được lưu vào nhật ký)")
    return actor.strip()


def plan_now() -> tuple[dt.datetime, object]:
    """The moment the plan's instance is at (its replay clock, else the real clock) and its zone."""
    ref = plan_ref()
    engine = engine_for(ref)
    tz = engine.plan.calendar.tz
    if engine.instance_id(ref.root_key) is None:
        return real_now(), tz
    return now_of(engine, ref.root_key), tz


def run_name(label: str, parameter: str | None = None):
    """A ``flow_run_name`` for Prefect: ``"<label> [<who>] dd/mm/yyyy HH:MM"`` at the plan's
    moment, so a 2022 replay's runs read as 2022 (the real clock would say today). ``parameter``:
    the run's parameter that names who it is for (a unit's list label "Sở Y tế (so-y-te)" gives
    "Sở Y tế")."""

    def name() -> str:
        try:
            now, tz = plan_now()
            who = ""
            if parameter:
                from prefect.runtime import flow_run

                who = str(flow_run.parameters.get(parameter) or "").split(" (")[0]
        except Exception:  # noqa: BLE001 - a run name never stops a run
            return label
        return " ".join(part for part in (label, who, short_datetime(now, tz)) if part)

    return name
