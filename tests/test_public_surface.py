"""The public surface of planflow: the names other code may import, pinned.

As Temporal's Python SDK does, the curated names of each package are listed here; adding,
renaming or removing one is a deliberate change of this file. The flows (and the CLI)
reach the engine only through the names in ``ENGINE_FOR_FLOWS``; a test reads flows/
and fails on anything else they touch.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PLANFLOW = [
    "BusinessCalendar", "CalendarError", "DefinitionError", "Engine", "Plan", "Problem", "ReadyStep",
    "Scenario", "StoreError", "Submission", "SubmissionError", "connect", "database_url", "load_plan",
    "load_scenario",
]

NOTIFICATIONS = [
    "DeliveryError", "FileChannel", "KINDS", "Message", "PACKAGE_TEMPLATE_DIR", "SAMPLE_CONTEXTS", "SmtpChannel",
    "TemplateError", "TemplateProblem", "build_email", "check_template", "message_id_for", "render", "safe_key",
    "template_files", "vn_date", "vn_datetime",
]

ENGINE_METHODS = [
    "advance", "element_of_token", "fire_timers", "instance", "instance_id", "next_deadline_at", "next_timer_at",
    "open_work", "ready_steps", "record_incident", "retrigger", "run_step", "set_clock", "stalled", "start",
    "submit", "sweep", "tree", "unit_items", "units",
]

# what flows/ (Prefect, the CLI) may use of the engine, module by module
ENGINE_FOR_FLOWS = {
    "planflow": PLANFLOW,
    "planflow.aggregation": ["GROUP_NAMES", "group_of"],
    "planflow.calendar_report": ["calendar_gaps", "year_calendar", "year_lines"],
    "planflow.charts": ["charts_markdown"],
    "planflow.clock": ["ClockError", "now_of", "real_now", "set_replay_clock"],
    "planflow.documents": ["attachments_for", "documents_dir", "export", "latest", "write_latest"],
    "planflow.definitions": ["shipped"],
    "planflow.plan_cache": ["cached_plan"],
    "planflow.plan_versions": ["MigrationError", "behind", "migrate", "plan_for", "started_version", "years"],
    "planflow.plan_years": ["this_year", "year_of_key"],
    "planflow.expressions": ["review_decision", "units_that_report"],
    "planflow.outbox": ["STATUSES", "claim", "deliverable", "env_number", "mark_sent", "max_attempts", "release",
                        "render_context", "requeue_failed", "statuses", "worker_id", "failed_rows"],
    "planflow.unit_labels": ["district_name", "element_name", "step_label", "unit_label", "unit_name"],
    "planflow.letters": ["coordinator", "criteria_tasks", "decision_task", "rows_for_link", "sender_address", "task_due",
                         "user_task"],
    "planflow.unit_links": ["LinkError", "generation", "generations", "reissue"],
    "planflow.submissions": ["ScoreError", "score_payload"],
    "planflow.annex_xlsx": ["criterion_scores"],
    "planflow.progress": ["instance_progress"],
    "planflow.registry_build": ["RegistryBuildError", "build_registry", "checked_text"],
    "planflow.report": ["latest_markdown", "plan_words", "reviews_of"],
    "planflow.scenario": ["default_scenario"],
    "planflow.simulation": ["SimulationStuck", "first_start", "run_year"],
    "planflow.status": ["instances_status", "masked_url", "outbox_overview"],
    "planflow.status_words": ["QD42", "REPORT", "moment_status", "qd42_status"],
    "planflow.summary": ["build_summary"],
    "planflow.bpmn.export": ["SchemaProblem", "export_bpmn"],
    "planflow.bpmn.importer": ["import_bpmn", "parse_bpmn", "read_bpmn"],
    "planflow.bpmn.layout": ["layout"],
    "planflow.bpmn.diagram": ["RenderError", "render"],
    "planflow.bpmn.plan_state": ["plan_state"],
    "planflow.bpmn.state_markdown": ["state_markdown"],
}


def test_planflow_exports_exactly_its_curated_names():
    import planflow

    assert sorted(planflow.__all__) == sorted(PLANFLOW)
    for name in PLANFLOW:
        assert getattr(planflow, name) is not None, name


def test_notifications_exports_exactly_its_curated_names():
    import planflow.notifications as notifications

    assert sorted(notifications.__all__) == sorted(NOTIFICATIONS)
    for name in NOTIFICATIONS:
        assert getattr(notifications, name) is not None, name


def test_the_engine_offers_its_methods():
    from planflow import Engine

    assert sorted(m for m in dir(Engine) if not m.startswith("_")) == sorted(ENGINE_METHODS)


@pytest.mark.parametrize("module", sorted(ENGINE_FOR_FLOWS))
def test_every_name_of_the_surface_exists_and_is_public(module):
    mod = importlib.import_module(module)
    for name in ENGINE_FOR_FLOWS[module]:
        assert not name.startswith("_") and hasattr(mod, name), f"{module}.{name}"


def _engine_names_used_by(path: Path) -> set[str]:
    """``module.name`` for every engine name a flows/ module imports or reaches through a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: dict[str, str] = {}
    used: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("planflow")):
            continue
        if node.module.startswith(("planflow.flows", "planflow.notifications", "planflow.portal")):
            continue
        for alias in node.names:
            full = f"{node.module}.{alias.name}"
            try:
                importlib.import_module(full)
                modules[alias.asname or alias.name] = full
            except ImportError:
                used.add(full)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            used.add(f"{modules[node.value.id]}.{node.attr}")
    return used


def test_flows_use_only_the_engines_public_surface():
    allowed = {f"{module}.{name}" for module, names in ENGINE_FOR_FLOWS.items() for name in names}
    outside = sorted(f"{path.relative_to(REPO)}: {name}"
                     for path in sorted([*(REPO / "flows").glob("*.py"), *(REPO / "portal").glob("*.py")])
                     for name in _engine_names_used_by(path) if name not in allowed)
    assert not outside, "flows reach past the engine's public surface:\n" + "\n".join(outside)
