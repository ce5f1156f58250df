"""docs/language.md, the reference for the plan language, cannot drift from the code.

Its YAML blocks marked ``# full plan`` are loaded as plans (with the blocks marked
``# file: PATH`` written beside them and the shipped registries and forms copied there), so
an officer who copies an example gets a plan that validates; every field of the models a plan
is written in is named in it; every shipped file it points to exists.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from planflow.loader import load_plan
from planflow.model import (
    Band, Boundary, Condition, Definition, Document, Element, Escalation, Field_, Form, Group, Item, Registry,
    RegistryRoot, Retry, Signer, Stage, TimerStart, Unit,
)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "language.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```yaml\n(.*?)^```", TEXT, re.S | re.M)
FULL_PLAN = "# full plan"
FILE_MARK = re.compile(r"# file: (\S+)")


def _first_line(block: str) -> str:
    return block.split("\n", 1)[0].strip()


PLANS = [b for b in BLOCKS if _first_line(b) == FULL_PLAN]
FILES = {m.group(1): b for b in BLOCKS if (m := FILE_MARK.fullmatch(_first_line(b)))}


def _plan_id(block: str) -> str:
    return re.search(r"^id: (\S+)", block, re.M).group(1)


@pytest.fixture
def plan_folder(tmp_path: Path) -> Path:
    """A folder like definitions/: the shipped registries and forms, and the doc's own files."""
    for sub in ("registries", "forms"):
        shutil.copytree(ROOT / "definitions" / sub, tmp_path / sub, ignore=shutil.ignore_patterns("*.py"))
    for rel, text in FILES.items():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return tmp_path


def test_the_doc_has_full_plans_one_tier_and_two_tier():
    assert len(PLANS) >= 2, "docs/language.md should carry at least two blocks marked '# full plan'"
    assert any("for_each: departments + communes" in b and "callActivity" not in b for b in PLANS), \
        "the two-tier example (communes reporting straight, no callActivity) is missing"


@pytest.mark.parametrize("block", PLANS, ids=[_plan_id(b) for b in PLANS])
def test_every_full_plan_of_the_doc_loads(block: str, plan_folder: Path):
    path = plan_folder / f"{_plan_id(block)}.yaml"
    path.write_text(block, encoding="utf-8")
    plan = load_plan(path)  # raises DefinitionError, naming file:line, if the example is wrong
    assert plan.id == _plan_id(block)
    assert plan.registry.units and plan.forms
    assert {e.type for e in plan.definition.elements} >= {"startEvent", "userTask", "serviceTask", "endEvent"}


EVERY_YEAR = [b for b in PLANS if not re.search(r"^year:", b, re.M)]


def test_the_doc_has_a_plan_of_every_year():
    assert EVERY_YEAR and all("{year}" in b for b in EVERY_YEAR)


@pytest.mark.parametrize("block", EVERY_YEAR, ids=[_plan_id(b) for b in EVERY_YEAR])
@pytest.mark.parametrize("year", [2026, 2027])
def test_a_plan_of_every_year_loads_for_each_year(block: str, year: int, plan_folder: Path):
    path = plan_folder / f"{_plan_id(block)}.yaml"
    path.write_text(block, encoding="utf-8")
    plan = load_plan(path, year=year)
    assert plan.definition.year == year
    assert f"năm {year}" in plan.definition.name and "{year}" not in plan.definition.document.title


def test_every_file_block_is_used_by_a_full_plan():
    used = "\n".join(PLANS)
    for rel in FILES:
        assert rel in used, f"docs/language.md: '# file: {rel}' is not referred to by any full plan"


MODELS = [Definition, Element, Document, Registry, Unit, Form,
          Signer, Stage, Retry, TimerStart, Boundary, Escalation, Condition, RegistryRoot, Group, Item, Band, Field_]


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_every_field_of_the_models_is_named_in_the_doc(model):
    missing = [name for name in model.model_fields if f"`{name}`" not in TEXT]
    assert not missing, f"docs/language.md does not name {model.__name__}'s field(s) {missing} (as `field`)"


def test_every_shipped_file_the_doc_points_to_exists():
    paths = set(re.findall(r"`((?:definitions|notifications|planflow|docs|tests)/[^`\s]+)`", TEXT))
    assert paths, "the doc points to no shipped file"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"docs/language.md points to files that do not exist: {missing}"
