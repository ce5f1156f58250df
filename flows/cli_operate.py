"""The operator's commands: ``status``, ``notifications``, ``sweep``, ``serve``, ``automations``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Optional

import typer

from planflow.flows.cli_common import app, db_url, err, fail, out, outbox_dir_for, user_errors


def existing_store(url: str) -> None:
    """Open the store at ``url`` only if it exists (nothing is created), or fail with why."""
    from planflow import connect

    try:
        connect(url, create=False)
    except user_errors() as exc:
        fail(exc)


@app.command()
def status(db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the engine's store")) -> None:
    """Plan instances in a store: progress, open steps, failed steps and notifications."""
    from planflow.status import instances_status, masked_url

    url = db_url(db)
    existing_store(url)
    try:
        rows = instances_status(url)
    except user_errors() as exc:
        fail(exc)
    if not rows:
        out.print(f"No plan instance in {masked_url(url)}.", highlight=False)
        return
    for r in rows:
        out.print(f"[bold]{r['key']}[/bold] — {r['status']}, clock {r['clock_at'] or '—'}", highlight=False)
        reported = (f"reported {r['reported']}/{r['expected']} units asked" if r["expected"] is not None
                    else r["note"])
        out.print(f"  {reported}; open steps: {', '.join(r['open_steps']) or 'none'}", highlight=False)
        for stalled in r["stalled"]:
            out.print(f"  [red]stalled[/red] {stalled}", highlight=False)
        for incident in r["incidents"]:
            out.print(f"  [red]notification failed[/red] {incident}", highlight=False)


def _definition_for(definition_id: str, digest: str | None, given: Path | None) -> Path:
    """The definition file of a plan instance: ``given``, else found by id under definitions/
    (here, then the shipped ones); a file that is not a valid definition is passed over."""
    from planflow import load_plan
    from planflow.definitions import shipped

    if given is not None:
        return given
    folders = [Path.cwd() / "definitions", shipped()]
    matches: list[Path] = []
    digests: dict[Path, str] = {}
    for folder in dict.fromkeys(f.resolve() for f in folders if f.is_dir()):
        for path in sorted(folder.glob("*.yaml")):
            try:
                plan = load_plan(path)
            except user_errors():
                continue
            if plan.id == definition_id:
                matches.append(path)
                digests[path] = plan.digest
    for path in matches:
        if digests[path] == digest:
            return path
    if matches:
        err.print(f"[yellow]note[/yellow] {matches[0]} has changed since plan '{definition_id}' was started; "
                  "using it as it is now", highlight=False, soft_wrap=True)
        return matches[0]
    raise FileNotFoundError(f"no definition with id '{definition_id}' under ./definitions: name it with --definition")


@app.command()
def notifications(
    db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the engine's store"),
    retry: bool = typer.Option(False, "--retry", help="put failed notifications back to pending and deliver them"),
    actor: Optional[str] = typer.Option(None, help="who retries, for the audit (default: $USER)"),
    reason: Optional[str] = typer.Option(None, help="why, for the audit"),
    only: Optional[list[int]] = typer.Option(None, "--id", help="retry only these notifications (repeatable)"),
    definition: Optional[Path] = typer.Option(None, help="the plan's definition file (default: found by id)"),
    outbox_dir: Optional[Path] = typer.Option(None, "--outbox", help="where the file channel writes "
                                              "(default: 'outbox' beside a SQLite store, else out/outbox)"),
) -> None:
    """Failed notifications (incidents); with --retry, deliver them again (SMTP or files, as configured)."""
    import datetime as dt
    import getpass

    from rich.markup import escape

    from planflow.outbox import STATUSES
    from planflow.status import outbox_overview

    url = db_url(db)
    existing_store(url)
    try:
        overview = outbox_overview(url, ids=only or None)
    except user_errors() as exc:
        fail(exc)
    counts, incidents = overview["counts"], overview["incidents"]
    out.print("Notifications in " + overview["store"] + ": " + (", ".join(
        f"{counts.get(k, 0)} {k}" for k in STATUSES) if counts else "none"), highlight=False, soft_wrap=True)
    for i in incidents:
        out.print(f"[red]failed[/red] #{i['id']} {i['kind']} to {i['recipient']} <{i['email'] or '?'}> "
                  f"({escape(str(i['root_key']))}), {i['attempts']} attempt(s): {escape(i['last_error'] or '')}",
                  highlight=False, soft_wrap=True)
    if not retry:
        if incidents:
            out.print(f"{len(incidents)} failed; deliver them again with: planflow notifications --retry",
                      highlight=False)
        return
    if not incidents:
        out.print("Nothing to retry.", highlight=False)
        return
    who = actor or os.environ.get("USER") or getpass.getuser()
    now = dt.datetime.now(dt.timezone.utc)
    outbox_dir = outbox_dir_for(outbox_dir, url)
    by_root: dict[str, list[dict]] = {}
    for i in incidents:
        by_root.setdefault(i["root_key"], []).append(i)
    still_failed = requeued = 0
    for root_key, rows in by_root.items():
        path = _definition_orfail(rows[0], definition)
        retried, failed = _retry_notifications(url, root_key, path, rows, who, reason, outbox_dir, now)
        requeued, still_failed = requeued + retried, still_failed + failed
    out.print(f"Retried {requeued} notification(s) as {who}; {still_failed} still failed.", highlight=False)
    if still_failed:
        raise typer.Exit(1)


def _definition_orfail(incident: dict, given: Path | None) -> Path:
    try:
        return _definition_for(incident["definition_id"], incident["definition_digest"], given)
    except FileNotFoundError as exc:
        fail(exc)


def _retry_notifications(url: str, root_key: str, path: Path, rows: list[dict], who: str, reason: str | None,
                         outbox_dir: str, now) -> tuple[int, int]:
    """Put one instance's failed notifications back and deliver them, one attempt each;
    print what became of each. Return (how many were put back, how many failed again)."""
    from rich.markup import escape

    from planflow import connect, outbox
    from planflow.flows.delivery import channel_for, deliver_pending
    from planflow.flows.runtime import RunRef

    store = connect(url)
    ref = RunRef(definition=str(path), db_url=url, root_key=root_key, outbox_dir=outbox_dir)
    try:
        channel = channel_for(ref)  # a configuration error stops here, before anything is requeued
    except ValueError as exc:
        fail(exc)
    ids = outbox.requeue_failed(store, [r["id"] for r in rows], actor=who, reason=reason, at=now)
    try:
        # one attempt each: what fails again is failed again, not left pending unseen
        deliver_pending(ref, now, only=ids, max_attempts=1, channel=channel)
    except user_errors() as exc:
        fail(exc)
    after = outbox.statuses(store, ids)
    still_failed = 0
    for r in rows:
        if r["id"] not in ids:
            continue
        status, error = after[r["id"]]
        if status == "sent":
            out.print(f"[green]sent[/green] #{r['id']} {r['kind']} to {r['recipient']}", highlight=False)
        else:
            still_failed += status == "failed"
            out.print(f"[red]{status}[/red] #{r['id']} {r['kind']} to {r['recipient']}: {escape(error or '')}",
                      highlight=False, soft_wrap=True)
    return len(ids), still_failed


@app.command()
def sweep(
    as_of: str = typer.Option(..., "--as-of", help="ISO 8601 datetime with offset, e.g. 2022-12-12T08:00:00+07:00"),
    definition: list[Path] = typer.Option([], help="definitions to sweep (default: every definitions/*.yaml)"),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the engine's store"),
) -> None:
    """Run the deadline sweep: reminders, escalations and closing of tasks due at --as-of."""
    import datetime as dt

    from planflow.flows.runtime import prefect_defaults

    try:
        when = dt.datetime.fromisoformat(as_of)
    except ValueError:
        fail(ValueError(f"--as-of '{as_of}' is not an ISO 8601 datetime"))
    if when.tzinfo is None:
        fail(ValueError(f"--as-of '{as_of}' needs a UTC offset, e.g. +07:00"))
    from planflow.plan_cache import cached_plan

    url = db_url(db)
    paths = definition or sorted(Path("definitions").glob("*.yaml"))
    if not paths:
        fail(FileNotFoundError(f"no definition to sweep: none given with --definition and no definitions/*.yaml "
                               f"in {Path.cwd()}"))
    plans = []
    for path in paths:  # every definition and the store checked before anything is swept
        try:
            plans.append(cached_plan(path))  # the plans the sweep then runs on, loaded once
        except user_errors() as exc:
            fail(exc)
    existing_store(url)
    prefect_defaults()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from planflow.flows.runtime import RunRef
    from planflow.flows.stages import deadline_sweep

    total = 0
    outbox_dir = os.environ.get("PLANFLOW_OUTBOX_DIR", "out/outbox")
    for plan in plans:
        ref = RunRef(definition=str(plan.path), db_url=url, outbox_dir=outbox_dir)
        total += asyncio.run(deadline_sweep(ref, when))
        out.print(f"{plan.id}: swept at {when.isoformat()}", highlight=False)
    out.print(f"{total} reminder(s) and escalation(s) recorded.", highlight=False)



def _plans_for_server(definition: Path, how: str) -> list:
    """Every plan of ``definition`` (a file or a folder), each checked, before anything is
    registered with the Prefect server of ``PREFECT_API_URL`` (its absence refused, saying ``how``)."""
    from planflow import load_plan
    from planflow.flows.served_plans import ServedPlanError, plan_files

    from planflow.flows.serve import advance_after

    if not os.environ.get("PREFECT_API_URL"):
        fail(ValueError(f"PREFECT_API_URL is not set: {how}"))
    try:
        advance_after()  # the automations' setting, checked before anything is registered
        return [load_plan(path) for path in plan_files(definition)]
    except (*user_errors(), ServedPlanError, ValueError) as exc:
        fail(exc)


@app.command()
def serve(
    definition: Path = typer.Argument(Path("definitions/hai-duong-dan-van-2022.yaml"),
                                      help="process definition, or a folder of them (every plan at its top level)"),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the engine's store"),
) -> None:
    """Register the deployments and automations of a plan, or of every plan in a folder, with the
    Prefect server and run them."""
    plans = _plans_for_server(definition, "start a server (prefect server start) and export "
                                          "PREFECT_API_URL=http://127.0.0.1:4200/api — see README, 'Run it for real'")
    from planflow import connect
    from planflow.flows.serve import serve as serve_plans
    from planflow.status import masked_url

    url = db_url(db)
    try:
        connect(url)  # the live store: made here when it is new; a wrong URL stops here
    except user_errors() as exc:
        fail(exc)
    out.print(f"Serving {', '.join(plan.id for plan in plans)} from {definition} (store {masked_url(url)}) "
              f"at {os.environ['PREFECT_API_URL']}", highlight=False)
    asyncio.run(serve_plans(str(definition), url))


@app.command()
def deploy(
    definition: Path = typer.Argument(Path("definitions/hai-duong-dan-van-2022.yaml"),
                                      help="process definition, or a folder of them (every plan at its top level)"),
    pool: str = typer.Option("planflow", help="the work pool whose workers run the deployments"),
) -> None:
    """Register the deployments and automations of a plan, or of every plan in a folder, on a work
    pool: its workers (``prefect worker start --pool``, anywhere) run them. Nothing is served here."""
    from planflow.flows.serve import plan_automations, pool_type, register

    plans = _plans_for_server(definition, "export PREFECT_API_URL=http://<server>:4200/api — "
                                          "see README, 'Run it at scale'")
    try:
        kind = asyncio.run(pool_type(pool))
    except ConnectionError as exc:
        fail(exc)
    if kind is None:
        fail(LookupError(f"no work pool '{pool}' on {os.environ['PREFECT_API_URL']}: create it first — "
                         f"prefect work-pool create {pool} --type process --base-job-template work-pool.json"))
    _, ids = asyncio.run(register(str(definition), work_pool=pool))
    for plan in plans:
        out.print(f"[green]deployed[/green] {plan.id}: {len(ids[plan.id])} deployments on pool {pool}, "
                  f"{len(plan_automations(plan.id, ids[plan.id]))} automations", highlight=False)
    out.print(f"Workers: PLANFLOW_DEFINITION={definition.resolve()} (the same folder on every machine), "
              f"PLANFLOW_DATABASE_URL, then prefect worker start --pool {pool}", highlight=False)


@app.command()
def automations() -> None:
    """Create (or replace) the plan's automations on the Prefect server, for deployments made by
    ``prefect deploy --all`` (``planflow serve`` creates them itself)."""
    if not os.environ.get("PREFECT_API_URL"):
        fail(ValueError("PREFECT_API_URL is not set: export PREFECT_API_URL=http://127.0.0.1:4200/api "
                         "(the server the deployments were made on)"))
    from planflow.flows.serve import register_automations

    try:
        names = asyncio.run(register_automations())
    except (LookupError, *user_errors()) as exc:
        fail(exc)
    for name in names:
        out.print(f"[green]automation[/green] {name}", highlight=False)
