"""planflow's engine: definitions, interpreter, store and clock — no Prefect inside."""

from planflow.calendar import BusinessCalendar
from planflow.interpreter import Engine, ReadyStep
from planflow.loader import Plan, load_plan
from planflow.problems import CalendarError, DefinitionError, Problem
from planflow.scenario import Scenario, load_scenario
from planflow.store import StoreError, connect, database_url
from planflow.submissions import Submission, SubmissionError

__all__ = [
    "BusinessCalendar", "CalendarError", "DefinitionError", "Engine", "Plan", "Problem", "ReadyStep",
    "Scenario", "StoreError", "Submission", "SubmissionError", "connect", "database_url", "load_plan",
    "load_scenario",
]
