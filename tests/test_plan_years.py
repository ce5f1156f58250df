"""A plan of every year: one definition run for 2022, 2023 and 2026, each with that year's
calendar and units in force, side by side in one store; a running year keeps the definition
it started with, `planflow validate` names it, and moving it on is an operator's audited act."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from planflow import DefinitionError, Engine, connect, load_plan, load_scenario
from planflow import store as s
from planflow.plan_versions import MigrationError, behind, migrate, plan_for
from planflow.simulation import EngineActions, first_start, run_year
from planflow.summary import build_summary
from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "every-year"
TZ = dt.timezone(dt.timedelta(hours=7))


@pytest.fixture
def every_year(tmp_path):
    """The every-year fixture, copied where a test may edit it, with the shipped form where its
    path (``../../../definitions/forms/``) finds it."""
    folder = tmp_path / "a" / "b" / "c"
    shutil.copytree(FIXTURE, folder)
    shutil.copytree(REPO / "definitions" / "forms", tmp_path / "definitions" / "forms")
    return folder / "plan.yaml"


def run_the_year(db, path, year: int) -> dict:
    key = f"thu-nghiem-moi-nam/{year}"
    plan = plan_for(db, key, path)
    engine = Engine(plan, db)
    clock = first_start(plan)
    root = engine.start(key, clock, replay=True)
    asyncio.run(run_year(engine, load_scenario(path.parent / "scenario.yaml", plan), root, clock,
                         EngineActions(engine, root)))
    return build_summary(engine, root)


def test_one_definition_runs_for_2022_2023_and_2026_side_by_side(every_year, db_url):
    db = connect(db_url)
    runs = {year: run_the_year(db, every_year, year) for year in (2022, 2023, 2026)}
    # "trước ngày 10/12": Sat 10/12/2022 -> Fri 9/12; Sun 10/12/2023 -> Fri 8/12; Thu 10/12/2026 -> Wed 9/12
    assert runs[2022]["units"]["so-noi-vu"]["due"] == "2022-12-09T23:59:59+07:00"
    assert runs[2023]["units"]["so-noi-vu"]["due"] == "2023-12-08T23:59:59+07:00"
    assert runs[2026]["units"]["so-noi-vu"]["due"] == "2026-12-09T23:59:59+07:00"
    # the units in force at the cycle's start: districts and their communes until 30/6/2025 ...
    assert sorted(runs[2022]["units"]) == sorted(runs[2023]["units"]) == [
        "huyen-a", "huyen-b", "so-noi-vu", "so-y-te", "xa-a1", "xa-a2", "xa-b1"]
    # ... communes straight under the province after
    assert sorted(runs[2026]["units"]) == ["so-noi-vu", "so-y-te", "xa-moi-1", "xa-moi-2", "xa-moi-3"]
    assert all(u["group"] != "district" for u in runs[2026]["units"].values())
    for year, summary in runs.items():
        assert summary["units"]["so-y-te"]["submitted_at"] == f"{year}-12-12T10:00:00+07:00"
        assert summary["units"]["so-y-te"]["status"] == "late"
    with db.connect() as conn:
        keys = conn.scalars(select(s.instances.c.key).where(s.instances.c.parent_id.is_(None))).all()
    assert sorted(keys) == ["thu-nghiem-moi-nam/2022", "thu-nghiem-moi-nam/2023", "thu-nghiem-moi-nam/2026"]


def test_the_year_is_written_into_names_and_the_plan_says_it_is_of_every_year(every_year):
    plan = load_plan(every_year, 2023)
    assert plan.every_year and plan.year == 2023
    assert plan.definition.name == "Kế hoạch công tác dân vận năm 2023 (thử nghiệm mọi năm)"
    assert plan.definition.document.title == "Triển khai công tác dân vận năm 2023"


def test_a_plan_of_a_fixed_year_is_refused_for_another_year_at_its_line():
    shipped = REPO / "definitions" / "hai-duong-dan-van-2022.yaml"
    assert load_plan(shipped).year == 2022 and not load_plan(shipped).every_year
    with pytest.raises(DefinitionError) as caught:
        load_plan(shipped, 2023)
    line = next(i for i, text in enumerate(shipped.read_text(encoding="utf-8").splitlines(), 1)
                if text.startswith("year:"))
    assert f"hai-duong-dan-van-2022.yaml:{line}:" in str(caught.value)
    assert "plan of 2022, not of 2023" in str(caught.value)


def _due_of(db, key: str, element: str) -> dt.datetime:
    with db.connect() as conn:
        return conn.scalar(select(s.work_items.c.due_at).join(s.instances, s.instances.c.id == s.work_items.c.instance_id)
                           .where(s.instances.c.key == key, s.work_items.c.element_id == element).limit(1))


def test_editing_the_definition_mid_year_leaves_the_running_year_on_its_version(every_year, db_url):
    from planflow.flows.cli import app

    db = connect(db_url)
    started = Engine(plan_for(db, "thu-nghiem-moi-nam/2022", every_year), db)
    root = started.start("thu-nghiem-moi-nam/2022", dt.datetime(2022, 3, 15, 8, tzinfo=TZ), replay=True)
    text = every_year.read_text(encoding="utf-8")
    every_year.write_text(text.replace('due: {before: "{year}-12-10"}\n    reminders',
                                       'due: {before: "{year}-12-20"}\n    reminders'), encoding="utf-8")
    edited = load_plan(every_year, 2022)
    assert edited.digest != started.plan.digest
    # whoever works on the 2022 instance now gets the version it started with
    kept = plan_for(db, "thu-nghiem-moi-nam/2022", every_year)
    assert kept.digest == started.plan.digest
    EngineActions(Engine(kept, db), root).drain(dt.datetime(2022, 3, 15, 8, tzinfo=TZ))
    assert _due_of(db, "thu-nghiem-moi-nam/2022", "departments_report") == dt.datetime(2022, 12, 9, 23, 59, 59, tzinfo=TZ)
    # the next year starts on the new version
    assert plan_for(db, "thu-nghiem-moi-nam/2023", every_year).digest == load_plan(every_year, 2023).digest
    # validate names the running instance the change does not reach
    result = CliRunner().invoke(app, ["validate", str(every_year), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "thu-nghiem-moi-nam/2022" in result.output and "does not reach it" in result.output


def test_moving_a_running_year_onto_the_new_version_is_named_and_audited(every_year, db_url):
    db = connect(db_url)
    old = Engine(plan_for(db, "thu-nghiem-moi-nam/2022", every_year), db)
    root = old.start("thu-nghiem-moi-nam/2022", dt.datetime(2022, 3, 15, 8, tzinfo=TZ), replay=True)
    every_year.write_text(every_year.read_text(encoding="utf-8").replace("reminders: [-2wd]", "reminders: [-3wd]"),
                          encoding="utf-8")
    new = load_plan(every_year, 2022)
    at = dt.datetime(2022, 4, 1, 9, tzinfo=TZ)
    with pytest.raises(MigrationError, match="actor"):
        migrate(db, "thu-nghiem-moi-nam/2022", new, actor=" ", reason="sửa nhắc hạn", as_of=at)
    assert [b.key for b in behind(db, new)] == ["thu-nghiem-moi-nam/2022"]
    previous = migrate(db, "thu-nghiem-moi-nam/2022", new, actor="Nguyễn Văn A", reason="sửa nhắc hạn", as_of=at)
    assert previous == old.plan.digest and behind(db, new) == []
    assert plan_for(db, "thu-nghiem-moi-nam/2022", every_year).digest == new.digest
    with db.connect() as conn:
        row = conn.execute(select(s.audit).where(s.audit.c.instance_id == root,
                                                 s.audit.c.action == "instance.migrated")).one()
    assert row.actor == "Nguyễn Văn A"
    assert row.detail == {"from": old.plan.digest, "to": new.digest, "reason": "sửa nhắc hạn"}


def test_validate_takes_a_year_and_refuses_another_for_a_fixed_year_plan(every_year):
    from planflow.flows.cli import app

    result = CliRunner().invoke(app, ["validate", str(every_year), "--year", "2023", "--db", "sqlite:///nowhere.db"])
    assert result.exit_code == 0, result.output
    assert "year 2023 (a plan of every year)" in " ".join(result.output.split())
    refused = CliRunner().invoke(app, ["validate", str(REPO / "definitions" / "hai-duong-dan-van-2022.yaml"),
                                       "--year", "2023"])
    assert refused.exit_code == 1 and "not of 2023" in refused.output


def test_planflow_migrate_moves_a_running_year_and_says_so(every_year, tmp_path):
    from planflow.flows.cli import app

    url = f"sqlite:///{tmp_path / 'store.db'}"
    db = connect(url)
    Engine(plan_for(db, "thu-nghiem-moi-nam/2022", every_year), db).start(
        "thu-nghiem-moi-nam/2022", dt.datetime(2022, 3, 15, 8, tzinfo=TZ), replay=True)
    every_year.write_text(every_year.read_text(encoding="utf-8").replace("reminders: [-2wd]", "reminders: [-3wd]"),
                          encoding="utf-8")
    unnamed = CliRunner().invoke(app, ["migrate", "thu-nghiem-moi-nam/2022", str(every_year), "--actor", " ",
                                       "--reason", "sửa", "--db", url])
    assert unnamed.exit_code == 1 and "actor" in unnamed.output
    done = CliRunner().invoke(app, ["migrate", "thu-nghiem-moi-nam/2022", str(every_year), "--actor", "Nguyễn Văn A",
                                    "--reason", "sửa nhắc hạn", "--db", url])
    assert done.exit_code == 0, done.output
    assert f"→ {load_plan(every_year, 2022).digest}" in done.output
    assert behind(db, load_plan(every_year, 2022)) == []
