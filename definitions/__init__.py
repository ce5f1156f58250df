"""The plans that ship with planflow, as data: definitions, registries, forms, calendars, scenarios.

Installed as ``planflow.definitions`` (package data); a user's own plan lives anywhere and
names a shipped calendar by its name (``calendar: vn-civil-service``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped(*parts: str) -> Path:
    """The path of a shipped data file or folder, wherever planflow is installed."""
    return Path(str(resources.files(__name__).joinpath(*parts)))
