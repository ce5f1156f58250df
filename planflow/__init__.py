"""planflow's engine: definitions, interpreter, store and clock — no Prefect inside."""

from planflow.calendar import BusinessCalendar, CalendarError
from planflow.interpreter import Engine, ReadyStep, Submission, SubmissionError
from planflow.loader import DefinitionError, Plan, Problem, load_plan
from planflow.scenario import Scenario, load_scenario
from planflow.store import connect, database_url

__all__ = [
    "BusinessCalendar", "CalendarError", "DefinitionError", "Engine", "Plan", "Problem", "ReadyStep",
    "Scenario", "Submission", "SubmissionError", "connect", "database_url", "load_plan", "load_scenario",
]
