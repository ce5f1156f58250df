"""What a flow needs to reach the engine: a serializable reference and a per-process cache."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel

from planflow import Engine, connect, load_plan


class RunRef(BaseModel):
    """Everything a Prefect task needs to find its plan instance (small, JSON-safe)."""

    definition: str
    db_url: str
    root_key: str = ""  # empty: every instance of the definition in the store
    outbox_dir: str = "out/outbox"


@lru_cache(maxsize=8)
def _engine(definition: str, db_url: str, mtime: float) -> Engine:
    return Engine(load_plan(definition), connect(db_url))


def engine_for(ref: RunRef) -> Engine:
    path = Path(ref.definition)
    return _engine(str(path.resolve()), ref.db_url, os.path.getmtime(path))


def root_id(ref: RunRef) -> int | None:
    """The plan instance a run is about; None (every instance) when ``root_key`` is empty."""
    if not ref.root_key:
        return None
    iid = engine_for(ref).instance_id(ref.root_key)
    if iid is None:
        raise LookupError(f"no plan instance '{ref.root_key}' in {ref.db_url}")
    return iid


def prefect_defaults() -> None:
    """Settings planflow needs from Prefect, unless the operator set them already."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS", "false")


def private_prefect_home(home: Path) -> None:
    """Run Prefect from ``home`` (its ephemeral API, database and profiles), not from the
    user's ``~/.prefect`` or active profile. Call before Prefect is imported."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(home.resolve())
    os.environ["PREFECT_PROFILES_PATH"] = str(home.resolve() / "profiles.toml")
    os.environ.pop("PREFECT_PROFILE", None)
