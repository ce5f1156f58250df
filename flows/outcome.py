"""How a run of the plan ends, as the Prefect UI shows it: red when something failed.

- A step that failed after its retries, or letters that could not be delivered after theirs
  during the run: the run ends **Failed** (Prefect's state "Failed", which the incident
  automation listens to), its message in Vietnamese saying what failed — the step, how many
  letters, to whom — and which re-trigger clears it.
- An operator's input refused (a unit with no open task, a score above its maximum...): the
  run ends Failed too, but named **"Từ chối"**: Prefect names the state-change event after the
  state (``prefect.flow-run.Từ chối``), so the incident automation, which expects
  ``prefect.flow-run.Failed``, does not write to Sở Nội vụ about a typing mistake.
- A run that went well while failed letters or stalled steps are still open: Completed, named
  **"Hoàn thành, còn sự cố"**, its message saying what is open.
- A run whose deployment the server is not configured for (``PLANFLOW_DEFINITION`` does not hold
  the plan the deployment is named after): **Failed** before it touches anything, one line
  naming the deployment and the folder and what to change (:func:`configured`), no traceback.
  It is the server's mistake, not an operator's: the incident automation sees it.
"""

from __future__ import annotations

import functools
from collections import Counter

from prefect import get_run_logger, tags
from prefect.states import Completed, Failed

from planflow import outbox
from planflow.flows.instance import OperatorError
from planflow.flows.runtime import RunRef, engine_for, root_id
from planflow.flows.served_plans import DeploymentNotServed, ServedPlanError
from planflow.unit_labels import step_label

REFUSED = "Từ chối"
OPEN_PROBLEMS = "Hoàn thành, còn sự cố"
OPERATOR_TAG = "operator"  # the tag of the deployments an operator runs (forms)
ACTION = "chạy retrigger-step (Deployments → retrigger-step → Run → Custom run)"


def _tree(ref: RunRef):
    engine = engine_for(ref)
    try:
        return engine, engine.tree(root_id(ref))
    except LookupError:
        return engine, []


def failed_letter_ids(ref: RunRef) -> set[int]:
    engine, tree = _tree(ref)
    return {r["id"] for r in outbox.failed_rows(engine.db, tree)} if tree else set()


def _step_name(plan, element_id: str | None) -> str:
    return f"«{step_label(plan, element_id)}»"


def _unit_names(plan, codes, limit: int = 5) -> str:
    names = [(plan.registry.get(c).name if plan.registry.get(c) else c) for c in codes]
    shown = ", ".join(names[:limit])
    return shown + (f" và {len(names) - limit} nơi khác" if len(names) > limit else "")


def _short(error: str | None, limit: int = 200) -> str:
    error = (error or "").strip()
    return error if len(error) <= limit else error[:limit - 1] + "…"


def letters_problem(plan, rows: list[dict]) -> str:
    """``"12 thư không gửi được ...: bước «...»: 12 thư đến UBND huyện ..., ... (lỗi: ...)"``."""
    by_step = Counter(r["step"] for r in rows)
    parts = []
    for step, count in by_step.items():
        mine = [r for r in rows if r["step"] == step]
        recipients = list(dict.fromkeys(r["recipient"] for r in mine))
        parts.append(f"bước {_step_name(plan, step)}: {count} thư đến {_unit_names(plan, recipients)} "
                     f"(lỗi: {_short(mine[-1]['error'])})")
    return f"{len(rows)} thư không gửi được sau khi đã thử lại — " + "; ".join(parts)


def _tries(detail: str) -> str:
    """``"2 attempt(s): RuntimeError: ..."`` (``Engine.stalled``) as ``"sau 2 lần thử: RuntimeError: ..."``."""
    count, _, error = detail.partition(" attempt(s): ")
    return f"sau {count} lần thử: {error}" if count.isdigit() else detail


def _steps_problem(plan, stalled: list[dict]) -> str:
    parts = [f"bước «{step_label(plan, x['step'])}»"
             + (f" của {_unit_names(plan, [x['unit']])}" if x["unit"] else "") + f", {_tries(x['detail'])}"
             for x in stalled]
    return "Không chạy được sau khi đã thử lại: " + "; ".join(parts)


def conclude(ref: RunRef, before: set[int], result, *, error: BaseException | None = None):
    """The state a run ends in (see the module), or ``result`` when all is well."""
    engine, tree = _tree(ref)
    plan = engine.plan
    if isinstance(error, OperatorError):
        get_run_logger().error("Từ chối: %s", error)
        return Failed(name=REFUSED, message=str(error))
    rows = outbox.failed_rows(engine.db, tree) if tree else []
    new = [r for r in rows if r["id"] not in before]
    stalled = [x for x in (engine.stalled(root_id(ref)) if tree else []) if x["kind"] == "step-failed"]
    if error is not None or new:
        said = []
        if error is not None:
            said.append(_steps_problem(plan, stalled) if stalled else f"{type(error).__name__}: {error}")
        if new:
            said.append(letters_problem(plan, new))
        steps = list(dict.fromkeys([x["step"] for x in stalled] + [r["step"] for r in new]))
        todo = (f"khắc phục nguyên nhân, rồi {ACTION}, chọn bước " + ", ".join(_step_name(plan, s) for s in steps)
                if steps else "gửi nhật ký của lần chạy này cho người quản trị planflow")
        message = ". ".join(said) + f". Việc cần làm: {todo}."
        get_run_logger().error(message)
        return Failed(message=message)
    if rows or stalled:
        open_ = [f"{len(rows)} thư chưa gửi được" if rows else "", f"{len(stalled)} bước bị lỗi" if stalled else ""]
        message = f"Còn {' và '.join(p for p in open_ if p)} (xem bảng việc cần xử lý): {ACTION}."
        get_run_logger().warning(message)
        return Completed(name=OPEN_PROBLEMS, message=message, data=result)
    return result


async def concluded(ref: RunRef, body):
    """Run ``await body()`` and end as :func:`conclude` says."""
    before = failed_letter_ids(ref)
    try:
        result = await body()
    except OperatorError as exc:
        return conclude(ref, before, None, error=exc)
    except Exception as exc:  # noqa: BLE001 - a step failed after its retries: said in Vietnamese
        return conclude(ref, before, None, error=exc)
    return conclude(ref, before, result)


def misconfigured(error: ServedPlanError):
    """The Failed state of a run the server is not configured for, said in one line."""
    if isinstance(error, DeploymentNotServed):
        message = (f"Deployment '{error.deployment}' không chạy được: thư mục Kế hoạch {error.folder} "
                   f"(PLANFLOW_DEFINITION) không có Kế hoạch mã '{error.deployment}' "
                   f"(ở đó có: {', '.join(error.plans)}). Việc cần làm: đặt PLANFLOW_DEFINITION của nơi chạy "
                   f"(planflow serve, worker) là thư mục có Kế hoạch này, hoặc xoá các deployment '{error.deployment}'.")
    else:
        message = (f"Cấu hình nơi chạy sai (PLANFLOW_DEFINITION): {error}. "
                   "Việc cần làm: sửa PLANFLOW_DEFINITION của nơi chạy (planflow serve, worker).")
    get_run_logger().error(message)
    return Failed(message=message)


def inherited_tags() -> list[str]:
    """The tags a deployed run's stage flows carry: its own (``planflow`` and the plan's id, from
    its deployment) but ``operator``, which marks the forms an operator runs. Prefect gives a
    subflow none of its parent's tags; with them the plan's lost-run automation also sees a
    stage flow whose worker was lost, and the plan's tag lists every run of the plan."""
    from prefect.runtime import flow_run

    return [t for t in (flow_run.tags or []) if t != OPERATOR_TAG]


def configured(fn):
    """A deployed flow that ends :func:`misconfigured` (Failed, one line, nothing done) when the
    server does not serve the plan its deployment is named after; its stage flows carry its
    tags (:func:`inherited_tags`)."""

    @functools.wraps(fn)
    async def run(*args, **kwargs):
        try:
            with tags(*inherited_tags()):
                return await fn(*args, **kwargs)
        except ServedPlanError as exc:
            return misconfigured(exc)

    return run
