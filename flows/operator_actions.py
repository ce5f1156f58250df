"""The flows people run from a form: a unit's self-evaluation, Ban Dân vận's review decision,
the re-trigger of a stalled step. Each form offers the plan's choices (``operator_forms``):
built from the plan by :func:`build`, on first use (``operations.__getattr__``).

The server refuses a value outside a list when the run is created (the deployment's parameter
schema, enforced); the flows check again themselves (``validate_parameters=False``), so that a
refusal reads in Vietnamese and names the unit and the criterion as the form shows them, and
ends the run "Từ chối" (no incident letter: see ``outcome``).
"""

# no ``from __future__ import annotations``: the forms' types are the plan's choices, read
# when each flow is built, and Prefect must see them as types, not as strings
from typing import Annotated, Optional

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from pydantic import Field

from planflow import Submission, SubmissionError, outbox
from planflow.flows.artifacts import artifact_key, publish_artifacts
from planflow.flows.events import emit_submitted
from planflow.flows.instance import OperatorError, named_actor, plan_ref, run_name, started
from planflow.flows.operator_forms import (ALL_STEPS, ALL_UNITS, Choices, PaperReport, any_unit_code, check_scores,
                                           decision_code, note_tasks, paper_report, step_id, unit_code)
from planflow.flows.outcome import concluded
from planflow.flows.runtime import root_id
from planflow.flows.stages import delivery_task, drive
from planflow.notifications.vn_format import short_datetime
from planflow.unit_labels import element_name, unit_label, unit_name

# where Prefect finds these flows (``operations.__getattr__`` builds them on first use)
ENTRYPOINT_MODULE = "planflow.flows.operations"

Actor = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]


def titled(title: str, description: str, default=...):
    """A parameter's default that titles its field in the Prefect UI's form."""
    return Field(default, description=description, json_schema_extra={"title": title})


def _record(ref, engine, submission: Submission, now) -> None:
    """Record one submission through the engine's one path, then tell Prefect (the event the
    automation moves the plan on with); a refusal is the operator's, in Vietnamese."""
    try:
        engine.submit([submission], now, root_id=root_id(ref))
    except SubmissionError as exc:
        raise OperatorError("; ".join(exc.problems)) from None
    emit_submitted(engine.plan, ref.root_key, submission.unit, submission.element, now, submission.actor)


def _paper_fields(paper: PaperReport | None, now, tz) -> dict:
    """The Submission fields of a paper report; a document dated after its receipt is refused."""
    if paper is None:
        return {}
    received = now.astimezone(tz).date()
    if paper.document_date > received:
        raise OperatorError(f"Văn bản số {paper.document_number} đề ngày {paper.document_date:%d/%m/%Y}, "
                            f"sau ngày nhận ({received:%d/%m/%Y}): kiểm tra lại ngày văn bản")
    return {"document_number": paper.document_number.strip(), "document_date": paper.document_date,
            "entry_reason": paper.reason.strip()}


def submit_flow(choices: Choices):
    sheet = choices.score_sheet

    async def submit_self_evaluation(
            unit: choices.unit_enum = titled("Đơn vị báo cáo", "Chọn đơn vị trong danh sách (tên — huyện (mã))"),
            scores: sheet = titled("Điểm tự đánh giá", "Điểm theo từng tiêu chí của biểu mẫu"),
            actor: Actor = titled("Người gửi", "Họ tên, chức vụ người gửi, hoặc cán bộ nhập thay văn bản giấy"),
            evidence: str = titled("Tài liệu kiểm chứng", "Số, ngày văn bản, đường dẫn tài liệu", ""),
            note: str = titled("Ghi chú", "Ghi chú", ""),
            paper: Optional[PaperReport] = titled("Văn bản giấy", "Chỉ khi nhập thay báo cáo bằng văn bản giấy", None),
    ):
        ref = plan_ref()

        async def body() -> str:
            engine, now = started(ref)
            code = unit_code(unit, choices)
            name = unit_name(engine.plan.registry, code)
            who = named_actor(actor, "Người gửi")
            papers = paper_report(paper)
            payload = {"scores": check_scores(scores, sheet, name), "evidence": evidence or "", "note": note or ""}
            tz = engine.plan.calendar.tz
            _record(ref, engine, Submission(unit=code, submitted_at=now, payload=payload, actor=who,
                                            **_paper_fields(papers, now, tz)), now)
            get_run_logger().info("Đã nhận báo cáo tự đánh giá của %s lúc %s (người gửi: %s%s)",
                                  unit_label(engine.plan.registry, code), short_datetime(now, tz), who,
                                  f", văn bản số {papers.document_number}" if papers else "")
            await publish_artifacts(ref, now)
            return code

        return await concluded(ref, body)

    submit_self_evaluation.__qualname__ = "submit_self_evaluation"
    submit_self_evaluation.__module__ = ENTRYPOINT_MODULE
    return flow(name="submit-self-evaluation", validate_parameters=False, flow_run_name=run_name("Báo cáo của", "unit"),
                description="Đơn vị gửi kết quả tự đánh giá công tác dân vận (chọn đơn vị trong danh sách).",
                )(submit_self_evaluation)


def _review_submission(engine, ref, choices: Choices, code: str, text: str) -> tuple[str, dict]:
    """The unit that decides (the one the open review task waits for, else the first unit of the
    review task's ``for_each``) and the answer in its form's fields."""
    review = choices.review
    waiting = [w.unit_code for w in engine.open_work(root_id(ref)) if review and w.element_id == review.element]
    if not waiting and not (review and review.units):
        raise OperatorError("Kế hoạch không có bước thẩm định (bước có biểu mẫu chọn ý kiến) hoặc không có đơn vị "
                            "thẩm định trong danh mục đơn vị")
    unit = waiting[0] if waiting else review.units[0]
    return unit, {review.field: code, **({review.comment: text or None} if review.comment else {})}


def review_flow(choices: Choices):
    said = " hoặc ".join(f"«{label}»" for label in choices.decisions)
    deciding = choices.reviewer or "đơn vị thẩm định"

    async def review_decision(
            decision: choices.decision_enum = titled("Ý kiến thẩm định", said),
            reviewer: Actor = titled("Người thẩm định (họ tên, chức vụ)",
                                     f"Ví dụ: Nguyễn Văn A, Phó Trưởng {deciding}; ghi vào nhật ký"),
            comment: str = titled("Ý kiến", f"Ý kiến cụ thể của {deciding}", ""),
    ):
        ref = plan_ref()

        async def body() -> str:
            engine, now = started(ref)
            code = decision_code(decision, choices)
            who = named_actor(reviewer, "Người thẩm định")
            text = (comment or "").strip()
            unit, payload = _review_submission(engine, ref, choices, code, text)
            _record(ref, engine, Submission(unit=unit, submitted_at=now, payload=payload, actor=who), now)
            label = {v: k for k, v in choices.decisions.items()}[code]
            get_run_logger().info("Đã ghi ý kiến thẩm định của %s: «%s», người thẩm định: %s, lúc %s%s",
                                  unit_name(engine.plan.registry, unit),
                                  label, who, short_datetime(now, engine.plan.calendar.tz),
                                  f"; ý kiến: «{text}»" if text else "; không có ý kiến thêm")
            await publish_artifacts(ref, now)
            return code

        return await concluded(ref, body)

    review_decision.__qualname__ = "review_decision"
    review_decision.__module__ = ENTRYPOINT_MODULE
    return flow(name="review-decision", validate_parameters=False, flow_run_name=run_name("Ý kiến thẩm định"),
                description=f"{deciding[:1].upper()}{deciding[1:]} cho ý kiến thẩm định kết quả tổng hợp: {said}.")(review_decision)


def revision_flow(choices: Choices):
    async def revise_report(
            note: str = titled("Nội dung đã bổ sung, hoàn thiện", "Những gì đã bổ sung theo ý kiến thẩm định", ""),
            actor: Actor = titled("Người thực hiện", "Họ tên, chức vụ; ghi vào nhật ký"),
    ):
        ref = plan_ref()

        async def body() -> str:
            engine, now = started(ref)
            who = named_actor(actor)
            tasks = note_tasks(engine.plan)
            waiting = [w for w in engine.open_work(root_id(ref)) if w.element_id in tasks]
            if not waiting:
                names = "; ".join(f"«{e.name or e.id}»" for e, _ in tasks.values()) or "(kế hoạch không có bước này)"
                raise OperatorError(f"Không có báo cáo nào đang chờ bổ sung, hoàn thiện: {names} chỉ mở khi "
                                    f"{choices.reviewer or 'đơn vị thẩm định'} trả lại báo cáo")
            item = waiting[0]
            element, form = tasks[item.element_id]
            text = next((f.name for f in form.fields if f.type == "text"), None)
            payload = {f.name: None for f in form.fields} | ({text: note.strip() or None} if text else {})
            _record(ref, engine, Submission(unit=item.unit_code, submitted_at=now, payload=payload,
                                            element=item.element_id, actor=who), now)
            get_run_logger().info("Đã ghi «%s» của %s lúc %s, người thực hiện: %s%s", element.name or element.id,
                                  unit_name(engine.plan.registry, item.unit_code),
                                  short_datetime(now, engine.plan.calendar.tz), who,
                                  f"; nội dung: «{note.strip()}»" if note.strip() else "")
            await publish_artifacts(ref, now)
            return item.element_id

        return await concluded(ref, body)

    revise_report.__qualname__ = "revise_report"
    return flow(name="revise-report", validate_parameters=False, flow_run_name=run_name("Hoàn thiện báo cáo"),
                description="Gửi lại báo cáo đã bổ sung, hoàn thiện theo ý kiến thẩm định của "
                            f"{choices.reviewer or 'đơn vị thẩm định'}; báo cáo được tổng hợp lại lúc này.")(revise_report)


def _went_out(engine, done: list[dict]) -> list[dict]:
    """The rows of the re-trigger's table: per unit, what was resent or re-run, and whether it
    went out now."""
    plan = engine.plan
    letters = [d["id"] for d in done if d["what"] == "letter"]
    status = outbox.statuses(engine.db, letters) if letters else {}
    rows = []
    for d in done:
        if d["what"] == "letter":
            state, error = status.get(d["id"], ("?", None))
            outcome = {"sent": "Đã gửi", "failed": f"Chưa gửi được: {(error or '')[:120]}"}.get(state, "Đang chờ gửi")
            what = f"Gửi lại thư «{d['kind']}» đến {unit_name(plan.registry, d['recipient'])}"
        else:
            outcome, what = "Đã chạy lại", "Chạy lại bước"
        rows.append({"Đơn vị": unit_label(plan.registry, d["unit"]) if d["unit"] else "Cả Kế hoạch",
                     "Bước": element_name(plan, d["step"]), "Việc đã làm": what, "Kết quả": outcome})
    return rows


def retrigger_flow(choices: Choices):
    async def retrigger_step(
            step: choices.step_enum = titled("Bước", "Bước cần chạy lại (tên trong Kế hoạch)", ALL_STEPS),
            reason: str = titled("Lý do", "Lý do chạy lại, ghi vào nhật ký"),
            actor: Actor = titled("Người thực hiện", "Họ tên, chức vụ; ghi vào nhật ký"),
            unit: choices.any_unit_enum = titled("Đơn vị", "Chỉ cho một đơn vị (thư gửi đến hoặc nói về đơn vị đó)",
                                                 ALL_UNITS),
    ):
        ref = plan_ref()

        async def body() -> int:
            engine, now = started(ref)
            element = step_id(step, choices)
            code = any_unit_code(unit, choices)
            who = named_actor(actor)
            if not (reason or "").strip():
                raise OperatorError("Lý do: ghi lý do chạy lại (được lưu vào nhật ký)")
            done = engine.retrigger(root_id(ref), element, unit=code, actor=who, reason=reason.strip(), as_of=now)
            if any(d["what"] == "letter" for d in done):
                # letters put back in the outbox go out now, not at the next delivery of the plan
                delivery_task()(ref, now)
            await _report(engine, ref, element, code, done)
            await drive(ref, now)
            await publish_artifacts(ref, now)
            return len(done)

        return await concluded(ref, body)

    retrigger_step.__qualname__ = "retrigger_step"
    retrigger_step.__module__ = ENTRYPOINT_MODULE
    return flow(name="retrigger-step", validate_parameters=False, flow_run_name=run_name("Chạy lại bước"),
                description="Chạy lại một bước bị đình trệ và gửi lại thư chưa gửi được; ghi người thực hiện và lý do.",
                )(retrigger_step)


async def _report(engine, ref, element: str, code: str | None, done: list[dict]) -> None:
    logger = get_run_logger()
    rows = _went_out(engine, done)
    where = (f"«{element_name(engine.plan, element)}»" if element else "(mọi bước)") + (
        f", {unit_label(engine.plan.registry, code)}" if code else "")
    if not rows:
        logger.info("Chạy lại bước %s: không có gì bị đình trệ, không làm gì", where)
    for row in rows:
        logger.info("Chạy lại bước %s — %s: %s — %s", where, row["Đơn vị"], row["Việc đã làm"], row["Kết quả"])
    sent = sum(1 for r in rows if r["Kết quả"] == "Đã gửi")
    await acreate_table_artifact(
        key=artifact_key(ref.root_key, "retrigger"), table=rows or [{"Đơn vị": "—", "Bước": where, "Việc đã làm":
                                                                     "Không có gì bị đình trệ", "Kết quả": "—"}],
        description=f"Chạy lại bước {where}: {len(rows)} việc, {sent} thư đã gửi")


def build(choices: Choices) -> dict[str, object]:
    return {"submit_self_evaluation": submit_flow(choices), "review_decision": review_flow(choices),
            "revise_report": revision_flow(choices), "retrigger_step": retrigger_flow(choices)}
