"""Which plans a server serves, and which one the current run works for.

``PLANFLOW_DEFINITION`` names a process definition or a folder of them (``planflow serve
DIR``, or a worker's environment). In a folder every ``*.yaml`` / ``*.yml`` at its top level
that is a process definition (top-level keys ``id`` and ``elements``) is a plan; registries,
forms and scenarios live in subfolders, and other files are left alone. Each plan's
deployments are named by its id, so a run's deployment — fixed by the server, never by a
caller — says which plan it works for (:func:`served_definition`).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from planflow.definitions import shipped

SHIPPED_DEFINITION = "hai-duong-dan-van-2022.yaml"
_TOP_KEY = re.compile(r"^(id|elements):(.*)$", re.M)  # a top-level key of a definition, and its value


class ServedPlanError(LookupError):
    """The served plans cannot be told apart, or the run's plan is not among them."""


class DeploymentNotServed(ServedPlanError):
    """A run's deployment is named after a plan the ``PLANFLOW_DEFINITION`` folder does not hold."""

    def __init__(self, deployment: str, folder: Path, plans: list[str]):
        self.deployment, self.folder, self.plans = deployment, folder, plans
        super().__init__(f"deployment '{deployment}': no plan with this id in {folder} "
                         f"(plans there: {', '.join(plans)})")


def configured_path() -> Path:
    """``PLANFLOW_DEFINITION`` (a file or a folder), else the shipped plan."""
    return Path(os.environ.get("PLANFLOW_DEFINITION") or str(shipped(SHIPPED_DEFINITION)))


def definition_id(path: Path) -> str | None:
    """The plan id of a process definition — a YAML file with the top-level keys ``id`` and
    ``elements`` — read from its ``id:`` line; None for any other file. (Whether the plan is
    right is ``load_plan``'s to say: ``planflow serve`` loads every plan before it registers.)"""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    keys = {m.group(1): m.group(2) for m in reversed(list(_TOP_KEY.finditer(text)))}
    if "elements" not in keys or "id" not in keys:
        return None
    value = keys["id"].split(" #")[0].strip().strip("'\"")
    return value or None


@lru_cache(maxsize=16)
def _plans_in(folder: str, stamp: tuple) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name, _mtime in stamp:
        path = Path(folder) / name
        plan_id = definition_id(path)
        if plan_id is None:
            continue
        if plan_id in found:
            raise ServedPlanError(f"{found[plan_id]} and {path}: both define the plan "
                                  f"'{plan_id}' (its deployments are named by it): give one of them another id")
        found[plan_id] = path
    return found


def plans_by_id(path: str | Path) -> dict[str, Path]:
    """Plan id -> definition file: of a file, itself; of a folder, every definition at its top
    level. Two definitions with one id, or a folder without any, are an error."""
    path = Path(path)
    if not path.is_dir():
        plan_id = definition_id(path) if path.is_file() else None
        if plan_id is None:
            raise ServedPlanError(f"{path}: not a process definition nor a folder of them "
                                  "(a definition has 'id:' and 'elements:')")
        return {plan_id: path}
    files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    found = _plans_in(str(path.resolve()), tuple((p.name, p.stat().st_mtime_ns) for p in files))
    if not found:
        raise ServedPlanError(f"{path}: no process definition in this folder (top level, *.yaml or "
                              "*.yml with 'id:' and 'elements:')")
    return dict(found)


def plan_files(path: str | Path) -> list[Path]:
    """The definitions served from ``path``: a file -> [it]; a folder -> its plans (by file name)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(plans_by_id(path).values())


def current_deployment_name() -> str | None:
    """The name of the deployment the current flow run belongs to (a plan's id), None outside one."""
    from prefect.runtime import deployment

    try:
        return deployment.name or None
    except Exception:  # noqa: BLE001 - no API to ask: not in a deployment's run
        return None


def served_definition() -> str:
    """The definition the current run works for: ``PLANFLOW_DEFINITION`` when it is a file;
    when a folder, the plan whose id names the run's deployment (outside a deployment, the
    folder's only plan). Nothing a caller sends chooses it."""
    path = configured_path()
    if not path.is_dir():
        return str(path)
    plans = plans_by_id(path)
    name = current_deployment_name()
    if name is not None:
        if name not in plans:
            raise DeploymentNotServed(name, path, sorted(plans))
        return str(plans[name])
    if len(plans) == 1:
        return str(next(iter(plans.values())))
    raise ServedPlanError(f"PLANFLOW_DEFINITION is the folder {path} with {len(plans)} plans "
                          f"({', '.join(sorted(plans))}): outside a deployment's run the plan cannot be told; "
                          "run the plan's deployment, or name its file")
