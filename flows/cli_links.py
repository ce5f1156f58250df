"""``planflow links reissue UNIT``: revoke a unit's personal link and send it a new one.

A unit's link (``planflow.portal.links``) is made when a letter is delivered, from the
generation of its links in force (``planflow.unit_links``); it is never stored. Reissuing
moves the generation on (audited with the operator and the reason: every older link is
refused from then on) and sends the unit a ``link`` letter with its new link, through the
outbox and the configured channel, like every other letter.

Everything is checked before anything is written: the portal's address and secret, the
plan instance (started), the unit (in the registry, asked to evaluate itself), the channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from planflow.flows.cli_common import app, db_url, fail, out, outbox_dir_for, user_errors

links = typer.Typer(add_completion=False, no_args_is_help=True,
                    help="Đường dẫn báo cáo riêng của các đơn vị (personal links to the unit portal).")
app.add_typer(links, name="links")


class LinkRefused(ValueError):
    """A link that cannot be reissued as asked (said why, naming the unit or the instance)."""


def _portal() -> None:
    """Refuse before anything is written when the portal's address or secret is missing."""
    from planflow.flows.delivery import portal_settings

    if portal_settings() is None:
        raise LinkRefused("chưa cấu hình cổng báo cáo, không tạo được đường dẫn mới: đặt PLANFLOW_PORTAL_URL và "
                          "PLANFLOW_PORTAL_SECRET (ít nhất 32 ký tự) hoặc Secret block 'planflow-portal-secret' "
                          "của Prefect / the unit portal is not configured")


def _target(definition: Path | None, year: int | None, url: str, outbox_dir: Path | None):
    """(run reference, engine, root id) of the plan instance of ``year``; refused when it has not started."""
    from planflow import load_plan
    from planflow.flows.instance import current_key, definition_path
    from planflow.flows.runtime import RunRef, engine_for
    from planflow.status import masked_url

    plan = load_plan(definition or definition_path(), year)
    key = current_key(plan, url, year)
    ref = RunRef(definition=str(plan.path), db_url=url, root_key=key, outbox_dir=outbox_dir_for(outbox_dir, url))
    engine = engine_for(ref)
    root = engine.instance_id(key)
    if root is None or engine.instance(root).parent_id is not None:
        raise LinkRefused(f"kế hoạch '{key}' chưa bắt đầu trong {masked_url(url)}: chưa có đường dẫn nào để cấp "
                          f"lại (bắt đầu bằng `planflow start`) / plan instance not started")
    return ref, engine, root


def _unit_task(engine, root: int, code: str):
    """(unit, its task with a link — its self-evaluation, else the review it decides —, the task's
    due moment) in the instance ``root``."""
    from planflow.expressions import review_decision
    from planflow.letters import criteria_tasks, task_due, user_task

    plan = engine.plan
    unit = plan.registry.get(code)
    if unit is None:
        raise LinkRefused(f"không có đơn vị '{code}' trong danh mục đơn vị của kế hoạch '{plan.id}': ghi mã "
                          "đơn vị đúng như danh mục / unknown unit")
    started = engine.instance(root).started_at
    review = review_decision(plan)
    element = criteria_tasks(plan, started).get(code) or (
        user_task(plan, review.element) if review is not None and code in review.units else None)
    if element is None:
        raise LinkRefused(f"đơn vị '{code}' ({unit.name}) không có nhiệm vụ tự đánh giá hay thẩm định trong kế "
                          f"hoạch '{plan.id}' nên không có đường dẫn / no self-evaluation or review task")
    items = engine.unit_items(root, code, element.id)
    if items and items[-1].status == "missing":
        raise LinkRefused(f"nhiệm vụ “{element.name}” của '{code}' ({unit.name}) đã đóng, đơn vị không còn báo "
                          "cáo được qua đường dẫn: không cấp lại / the task is closed")
    open_due = [w.due_at for w in items if w.status == "open"]
    return unit, element, open_due[0] if open_due else task_due(plan, element)


@links.command()
def reissue(
    unit: str = typer.Argument(..., help="the unit's code in the registry, e.g. ubnd-tp-hai-duong--phuong-cam-thuong"),
    definition: Optional[Path] = typer.Option(None, help="the plan's definition file (default: "
                                              "$PLANFLOW_DEFINITION, else the shipped plan)"),
    year: Optional[int] = typer.Option(None, "--year", help="the year of the plan instance (default: the "
                                       "plan's year, or the newest running year of a plan for every year)"),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the engine's store"),
    actor: str = typer.Option(..., help="who reissues the link (name, post), for the audit"),
    reason: str = typer.Option(..., help="why the old link is revoked, for the audit"),
    outbox_dir: Optional[Path] = typer.Option(None, "--outbox", help="where the file channel writes (default: "
                                              "$PLANFLOW_OUTBOX_DIR, else 'outbox' beside a SQLite store)"),
) -> None:
    """Revoke UNIT's personal link (every link sent before stops working) and send it a new
    one by letter; written to the audit log with the actor and the reason."""
    from planflow import letters, unit_links
    from planflow.clock import now_of
    from planflow.flows.delivery import channel_for
    from planflow.flows.cli_operate import existing_store

    url = db_url(db)
    existing_store(url)
    if not actor.strip() or not reason.strip():
        fail(LinkRefused("ghi rõ người thực hiện (--actor) và lý do (--reason): cả hai được lưu vào nhật ký "
                         "/ name the actor and the reason"))
    try:
        _portal()
        ref, engine, root = _target(definition, year, url, outbox_dir)
        found, element, due = _unit_task(engine, root, unit)
        channel = channel_for(ref)  # a configuration error stops here, before anything is written
    except (LinkRefused, ValueError, LookupError, *user_errors()) as exc:
        fail(exc)
    as_of = now_of(engine, ref.root_key)

    def letter(generation: int) -> list[dict]:
        return letters.rows_for_link(engine.plan, root, found, element, generation=generation, due=due, as_of=as_of)

    try:  # the new generation and its letter in one transaction
        generation = unit_links.reissue(engine.db, root, found.code, actor=actor, reason=reason, as_of=as_of,
                                        letters=letter)
    except unit_links.LinkError as exc:
        fail(exc)
    _deliver(ref, engine, root, letter(generation)[0]["key"], channel, as_of)
    out.print(f"[green]OK[/green] {found.code} ({found.name}): đã thu hồi các đường dẫn cũ, gửi đường dẫn mới "
              f"(lần cấp {generation}) tới {found.email or '?'} — {actor}: {reason}", highlight=False, soft_wrap=True)


def _deliver(ref, engine, root: int, key: str, channel, as_of) -> None:
    """Deliver the one letter ``key`` now (one attempt); a letter not sent ends the command with why."""
    from planflow import outbox
    from planflow.flows.delivery import NotDeliveredYet, deliver_pending

    ids = [r.id for r in outbox.deliverable(engine.db, instance_ids=[root]) if r.key == key]
    try:
        deliver_pending(ref, as_of, only=ids, max_attempts=1, channel=channel)
    except NotDeliveredYet:
        pass
    status, error = outbox.statuses(engine.db, ids).get(ids[0], ("missing", None)) if ids else ("missing", None)
    if status != "sent":
        fail(LinkRefused(f"đã cấp lại đường dẫn nhưng thư chưa gửi được ({status}: {error or '?'}): xem "
                         "`planflow notifications`, gửi lại bằng `planflow notifications --retry` / letter not sent"))
