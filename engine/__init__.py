"""planflow's engine: definitions, interpreter, store and clock — no Prefect inside."""

from engine.calendar import BusinessCalendar, CalendarError
from engine.interpreter import Engine, ReadyStep, Submission, SubmissionError
from engine.loader import DefinitionError, Plan, Problem, load_plan
from engine.scenario import Scenario, load_scenario
from engine.store import connect, database_url

__all__ = [
    "BusinessCalendar", "CalendarError", "DefinitionError", "Engine", "Plan", "Problem", "ReadyStep",
    "Scenario", "Submission", "SubmissionError", "connect", "database_url", "load_plan", "load_scenario",
]
