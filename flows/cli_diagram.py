"""``planflow diagram PLAN [-o FILE.svg|.png] [--db URL]``: the plan's processes as a
picture people read; with ``--db``, where the year's instance stands, drawn on it.

Drawn from the layout the BPMN export uses (``planflow.bpmn.layout``) by
``planflow.bpmn.diagram``: one drawing per process, stacked, Vietnamese names, lanes. PNG
needs ``rsvg-convert`` (Debian's librsvg2-bin). Everything is drawn before anything is
written: a plan that does not load, an output that is neither .svg nor .png, a store or an
instance that is not there, a PNG that cannot be drawn end the command with what is wrong,
and no file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from planflow.flows.cli_common import app, db_url, fail, out, user_errors
from planflow.flows.cli_plan import YEAR_HELP

FORMATS = (".svg", ".png")


class DiagramRefused(ValueError):
    """An output the diagram cannot be written to (said why)."""


def _output(given: Path | None, plan_id: str) -> Path:
    """Where the picture goes: ``-o``, else out/<plan id>.svg; refused unless .svg or .png."""
    path = given or Path("out") / f"{plan_id}.svg"
    if path.suffix.lower() not in FORMATS:
        raise DiagramRefused(f"{path}: the diagram is written as SVG or PNG, name the file .svg or .png")
    if path.exists() and path.is_dir():
        raise DiagramRefused(f"{path} is a folder: give a file name ending in .svg or .png")
    return path


def _standing(plan, year: int | None, db: str, key: str | None):
    """(the plan the instance runs, where it stands now: its replay clock, else the real one)."""
    from planflow.bpmn.plan_state import plan_state
    from planflow.clock import now_of
    from planflow.flows.cli_operate import existing_store
    from planflow.flows.instance import current_key
    from planflow.flows.runtime import RunRef, engine_for
    from planflow.status import masked_url

    url = db_url(db)
    existing_store(url)
    key = key or current_key(plan, url, year)
    engine = engine_for(RunRef(definition=str(plan.path), db_url=url, root_key=key))
    root = engine.instance_id(key)
    if root is None or engine.instance(root).parent_id is not None:
        raise DiagramRefused(f"no plan instance '{key}' in {masked_url(url)}: start it first (planflow start), "
                             "or name it with --instance")
    return engine.plan, plan_state(engine, root, now_of(engine, key))


@app.command()
def diagram(
    definition: Path = typer.Argument(..., help="process definition (YAML)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="FILE.svg or FILE.png "
                                          "(default: out/<plan id>.svg)"),
    year: Optional[int] = typer.Option(None, "--year", help=YEAR_HELP),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the engine's store: draw where the year's "
                                     "instance stands"),
    instance: Optional[str] = typer.Option(None, help="with --db, the instance's key (default: <plan id>/<year>; "
                                           "a plan of every year: its newest running year)"),
) -> None:
    """Draw the plan's processes (BPMN shapes in lanes, Vietnamese names) as SVG or PNG,
    readable printed on A4 landscape; with --db, coloured by where its instance stands."""
    from planflow import load_plan
    from planflow.bpmn.diagram import RenderError, render

    try:
        plan = load_plan(definition, year)
        path = _output(output, plan.id)
        plan, state = _standing(plan, year, db, instance) if db or instance else (plan, None)
        data = render(plan, path.suffix, state)
    except (DiagramRefused, RenderError, LookupError, *user_errors()) as exc:
        fail(exc)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        fail(DiagramRefused(f"{path}: cannot write the diagram there ({exc.strerror or exc})"))
    d = plan.definition
    n = len(d.elements) + sum(len(p.elements) for p in d.subprocesses)
    out.print(f"[green]OK[/green] {path}: {1 + len(d.subprocesses)} process(es), {n} elements", highlight=False)
