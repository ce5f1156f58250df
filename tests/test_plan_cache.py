"""A deployed run loads its plan once, and again only when one of the plan's files changed."""

from __future__ import annotations

import gc
import shutil
import weakref
from pathlib import Path

import pytest

from planflow import DefinitionError
from planflow.plan_cache import cached_plan, long_lived
from tests.conftest import PLAN, REPO


@pytest.fixture()
def plan_copy(tmp_path) -> Path:
    folder = tmp_path / "definitions"
    shutil.copytree(REPO / "definitions", folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return folder / PLAN.name


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_an_unchanged_plan_is_loaded_once(plan_copy):
    first = cached_plan(plan_copy)
    assert cached_plan(plan_copy) is first
    assert cached_plan(str(plan_copy)) is first  # the same file however it is named
    assert cached_plan(plan_copy, 2022) is first  # the shipped plan is the plan of 2022: the same plan
    with pytest.raises(DefinitionError, match="this is the plan of 2022, not of 2023"):
        cached_plan(plan_copy, 2023)  # another year is refused, kept plan or not


def test_an_edited_registry_is_read_again(plan_copy):
    before = cached_plan(plan_copy)
    registry = plan_copy.parent / "registries" / "hai-duong-2022.yaml"
    _edit(registry, "    name: Tỉnh ủy Hải Dương\n", "    name: Tỉnh ủy tỉnh Hải Dương\n")
    after = cached_plan(plan_copy)
    assert after is not before and after.digest != before.digest
    assert after.registry.get("tinh-uy-hai-duong").name == "Tỉnh ủy tỉnh Hải Dương"
    assert before.registry.get("tinh-uy-hai-duong").name == "Tỉnh ủy Hải Dương"


def test_a_broken_edit_is_refused_at_its_line_and_the_fix_is_taken(plan_copy):
    good = cached_plan(plan_copy)
    text = plan_copy.read_text(encoding="utf-8")
    line = text.splitlines().index("registry: registries/hai-duong-2022.yaml") + 1
    _edit(plan_copy, "registry: registries/hai-duong-2022.yaml", "registry: registries/none.yaml")
    with pytest.raises(DefinitionError) as refused:
        cached_plan(plan_copy)
    assert f"{plan_copy.name}:{line}" in str(refused.value) and "none.yaml" in str(refused.value)
    with pytest.raises(DefinitionError):  # a refusal is not kept: checked again, refused again
        cached_plan(plan_copy)
    plan_copy.write_text(text, encoding="utf-8")
    assert cached_plan(plan_copy).digest == good.digest


def test_a_plan_of_every_year_is_kept_per_year(tmp_path):
    from planflow.plan_years import this_year

    folder = tmp_path / "a" / "b" / "c"
    shutil.copytree(REPO / "tests" / "fixtures" / "every-year", folder)
    shutil.copytree(REPO / "definitions" / "forms", tmp_path / "definitions" / "forms")
    path = folder / "plan.yaml"
    now = cached_plan(path)
    assert now.every_year and now.year == this_year()
    assert cached_plan(path, this_year()) is now
    other = cached_plan(path, 2023)
    assert other.year == 2023 and other is not now and cached_plan(path, 2023) is other


class _Node:
    """A cycle's member: only the cyclic collector can free it."""

    def __init__(self):
        self.me = self


@pytest.fixture()
def unfrozen():
    yield
    gc.unfreeze()  # the other tests' objects back in the collector's reach


def _tracked(obj) -> bool:
    return any(o is obj for o in gc.get_objects())


def test_a_kept_plan_is_out_of_the_collectors_walk(plan_copy, unfrozen):
    plan = cached_plan(plan_copy)
    assert gc.get_freeze_count() > 0
    # the plan's objects are no longer walked by each full collection (they are frozen)
    assert not _tracked(plan.registry) and not _tracked(plan.definition)
    gc.unfreeze()
    assert _tracked(plan.registry)


def test_what_died_in_cycles_before_a_load_is_collected_not_kept(plan_copy, unfrozen):
    waiting, alive = _Node(), _Node()
    dead_before = weakref.ref(waiting)
    del waiting  # a dead cycle not collected yet: a freeze alone would keep it for good
    first = cached_plan(plan_copy)
    assert dead_before() is None
    assert not _tracked(alive)  # alive at that load: frozen with the plan
    dead_since = weakref.ref(alive)
    del alive  # died since, in a cycle: the next plan loaded (here: the plan edited) frees it
    assert dead_since() is not None
    _edit(plan_copy.parent / "registries" / "hai-duong-2022.yaml",
          "    name: Tỉnh ủy Hải Dương\n", "    name: Tỉnh ủy tỉnh Hải Dương\n")
    second = cached_plan(plan_copy)
    assert second is not first and dead_since() is None
    assert not _tracked(second.registry)
    assert long_lived(first) is first  # the helper gives back the plan it kept
