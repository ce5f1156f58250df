"""The state of one plan instance, as operators and ``summary.json`` see it."""

from __future__ import annotations

from sqlalchemy import func, select

from planflow import store as s
from planflow.aggregation import GROUP_NAMES, GROUP_ORDER, unit_results
from planflow.report import review_elements
from planflow.status_words import qd42_status


def local_iso(plan, value) -> str | None:
    return value.astimezone(plan.calendar.tz).isoformat() if value else None


def stage_times(conn, plan, tree: list[int]) -> dict[str, str | None]:
    """Stage id -> when its last step completed (None while any of its steps is open)."""
    rows = conn.execute(
        select(s.tokens.c.element_id, s.tokens.c.status, s.tokens.c.completed_at, s.instances.c.process_id)
        .join(s.instances, s.instances.c.id == s.tokens.c.instance_id)
        .where(s.tokens.c.instance_id.in_(tree))).all()
    done: dict[str, list] = {st.id: [] for st in plan.definition.stages}
    open_: set[str] = set()
    for element_id, status, completed_at, process_id in rows:
        stage = plan.definition.process(process_id).element(element_id).stage
        if stage is None:
            continue
        if status == "completed":
            done[stage].append(completed_at)
        elif status != "cancelled":
            open_.add(stage)
    return {st: (local_iso(plan, max(times)) if times and st not in open_ else None) for st, times in done.items()}


def review_rounds(conn, plan, tree: list[int]) -> int:
    """How many decisions were recorded on the instance's review tasks (user tasks whose form
    decides, ``Form.decides``; a revision's note is not a review round)."""
    steps = list(review_elements(plan))
    return conn.scalar(
        select(func.count()).select_from(s.submissions)
        .join(s.work_items, s.work_items.c.id == s.submissions.c.work_item_id)
        .where(s.work_items.c.instance_id.in_(tree), s.work_items.c.element_id.in_(steps))) or 0


def class_labels(plan) -> list[str]:
    """The classes of the plan's criteria form, best first (its bands' labels)."""
    form = next((f for f in plan.forms.values() if f.kind == "criteria"), None)
    return [b.label for b in sorted(form.bands, key=lambda b: -b.min)] if form is not None else []


def build_summary(engine, root_id: int, as_of=None) -> dict:
    """The summary of an instance; task statuses are read at ``as_of`` (default: its clock)."""
    plan = engine.plan
    with engine.db.connect() as conn:
        tree = s.tree_ids(conn, root_id)
        inst = conn.execute(select(s.instances).where(s.instances.c.id == root_id)).one()
        results = unit_results(conn, plan, tree)
        as_of = as_of or inst.ended_at or inst.clock_at or inst.started_at
        escalations = [
            {"unit": unit, "level": level, "at": local_iso(plan, at)}
            for unit, level, at in conn.execute(
                select(s.chases.c.unit_code, s.chases.c.level, s.chases.c.due_at)
                .where(s.chases.c.instance_id.in_(tree), s.chases.c.kind == "escalation")
                .order_by(s.chases.c.due_at, s.chases.c.unit_code, s.chases.c.level))]
        levels: dict[str, int] = {}
        for e in escalations:
            levels[e["unit"]] = max(levels.get(e["unit"], 0), e["level"])
        outbox = dict(conn.execute(select(s.outbox.c.status, func.count()).where(
            s.outbox.c.instance_id.in_(tree)).group_by(s.outbox.c.status)).all())
        summary = {
            "definition": plan.id,
            "instance": inst.key,
            "status": inst.status,
            "started_at": local_iso(plan, inst.started_at),
            "ended_at": local_iso(plan, inst.ended_at),
            "units": {r.code: {"status": r.status, "score": r.score, "classification": r.classification,
                               "group": r.group, "district": r.district, "element": r.element,
                               "due": local_iso(plan, r.due_at),
                               "submitted_at": local_iso(plan, r.submitted_at),
                               "escalation_level": levels.get(r.code, 0),
                               "status_qd42": qd42_status(
                                   "submitted" if r.status in ("on_time", "late") else "open",
                                   r.status == "late", r.due_at, as_of)}
                      for r in sorted(results, key=lambda r: r.code)},
            # the tiers of units the plan asked, in order, by the names people read (a plan
            # without a district tier has no "district")
            "tiers": {g: GROUP_NAMES[g] for g in GROUP_ORDER if any(r.group == g for r in results)},
            "classes": class_labels(plan),
            "review_rounds": review_rounds(conn, plan, tree),
            "escalations": escalations,
            "stages": stage_times(conn, plan, tree),
            "notifications": outbox,
        }
    return summary
