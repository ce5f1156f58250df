"""``planflow registry``: a province's registry for a day, from official lists (issue 11).

Until 30/6/2025 the GSO list (three tiers: districts and their communes), from 1/7/2025 the
``vietnam-provinces`` package (two tiers: communes straight under the province). What a user
sees: the counts, the words of a tỉnh or a thành phố, a registry the loader and a plan accept,
the shipped Hải Dương registry rebuilt unit for unit, and clear errors that write nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from planflow import DefinitionError, Engine, load_plan, load_scenario, store
from planflow.flows import cli_registry
from planflow.flows.cli import app
from planflow.loader import load_registry
from planflow.registry_build import RegistryBuildError, build_registry, write_registry
from planflow.report import latest_report
from planflow.simulation import EngineActions, first_start, run_year

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "definitions" / "registries" / "hai-duong-2022.yaml"
MAKE_HAI_DUONG = REPO / "definitions" / "registries" / "make_hai_duong_2022.py"
DOMAIN_UNITS = REPO.parent / "shared" / "domain" / "units.yaml"
TWO_TIER_PLAN = REPO / "tests" / "fixtures" / "two-tier" / "plan.yaml"

if not any(c.name == "registry" for c in app.registered_commands):  # until flows/cli.py registers it
    cli_registry.register(app)


def planflow_registry(*args: str):
    return CliRunner().invoke(app, ["registry", *args])


@pytest.fixture(scope="module")
def hai_phong_2026(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("registry") / "hai-phong-2026.yaml"
    result = planflow_registry("--province", "31", "--on", "2026-01-01", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "114 UBND cấp xã" in result.output and "không có cấp huyện" in result.output
    return out


def test_hai_phong_2026_has_its_114_communes_straight_under_the_city(hai_phong_2026):
    reg = load_registry(hai_phong_2026)
    communes = reg.group("communes")
    assert len(communes) == 114
    assert Counter(u.name.split()[1] for u in communes) == {"xã": 67, "phường": 45, "đặc": 2}  # NQ 1669/NQ-UBTVQH15
    assert reg.group("districts") == [] and not any(u.kind == "ubnd-cap-huyen" for u in reg.units)
    assert {u.parent for u in communes} == {"ubnd-thanh-pho-hai-phong"}
    assert all("recipients" in u.groups for u in communes)  # no district to pass the plan on
    assert (reg.root.unit, reg.root.kind, reg.root.name, reg.root.gso_code, reg.root.party) == (
        "ubnd-thanh-pho-hai-phong", "thanh-pho", "Hải Phòng", "31", "thanh-uy-hai-phong")
    assert reg.get("ubnd-thanh-pho-hai-phong").name == "UBND thành phố Hải Phòng"
    assert reg.get("ubnd-dac-khu-cat-hai").name == "UBND đặc khu Cát Hải"
    assert all(u.valid_on(dt.date(2026, 1, 1)) and not u.valid_on(dt.date(2025, 6, 30)) for u in reg.units)
    # a city: no body is called "… tỉnh" or "Tỉnh ủy"
    words = [w for u in reg.units for w in (u.name, u.head or "")]
    assert not [w for w in words if "UBND tỉnh" in w or "Tỉnh ủy" in w or w.endswith(" tỉnh")]
    assert reg.get("van-phong-ubnd-tinh").name == "Văn phòng UBND thành phố"
    assert reg.get("thuong-truc-tinh-uy").name == "Thường trực Thành ủy"
    assert [u.code for u in reg.group("coordinators")] == ["so-noi-vu"]
    assert len(reg.group("departments")) == 12  # the sở after the March 2025 merger


def test_hai_duong_2022_has_its_12_districts_and_235_communes(tmp_path):
    out = tmp_path / "hd.yaml"
    result = planflow_registry("--province", "30", "--on", "2022-10-01", "-o", str(out))
    assert result.exit_code == 0, result.output
    reg = load_registry(out)
    districts, communes = reg.group("districts"), reg.group("communes")
    assert (len(districts), len(communes)) == (12, 235)
    per_district = Counter(u.parent for u in communes)
    assert per_district["ubnd-thanh-pho-hai-duong"] == 25 and per_district["ubnd-thi-xa-kinh-mon"] == 23
    assert per_district["ubnd-huyen-thanh-mien"] == 17 and set(per_district) == {u.code for u in districts}
    assert (reg.root.unit, reg.root.kind, reg.root.party) == ("ubnd-tinh-hai-duong", "tinh", "tinh-uy-hai-duong")
    assert reg.get("ubnd-tinh-hai-duong").name == "UBND tỉnh Hải Dương"
    assert reg.get("ubnd-tx-kinh-mon--phuong-tan-dan").parent == "ubnd-thi-xa-kinh-mon"  # names repeat across
    assert reg.get("ubnd-tp-chi-linh--phuong-tan-dan").parent == "ubnd-thanh-pho-chi-linh"  # districts
    assert len(reg.group("departments")) == 17  # the default list of the period, before the merger


def test_the_shipped_hai_duong_registry_is_the_builder_plus_hai_duongs_own_data(tmp_path):
    if not DOMAIN_UNITS.is_file():
        pytest.skip(f"the domain pack is not beside the repository: {DOMAIN_UNITS}")
    spec = importlib.util.spec_from_file_location("make_hai_duong_2022", MAKE_HAI_DUONG)
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    out = tmp_path / "hai-duong-2022.yaml"
    make.main(["make", str(DOMAIN_UNITS), "-o", str(out)])
    rebuilt, shipped = yaml.safe_load(out.read_text("utf-8")), yaml.safe_load(SHIPPED.read_text("utf-8"))
    assert rebuilt["units"] == shipped["units"]  # every unit, every field, in order
    assert len(shipped["units"]) == 278 and shipped["root"]["kind"] == "tinh"
    assert load_registry(SHIPPED).root.unit == "ubnd-tinh-hai-duong"


def _two_tier_plan(folder: Path, registry: Path) -> Path:
    (folder / "forms").mkdir(parents=True)
    shutil.copy(REPO / "definitions" / "forms" / "self-evaluation.yaml", folder / "forms")
    shutil.copy(registry, folder / "registry.yaml")
    return Path(shutil.copy(TWO_TIER_PLAN, folder / "plan.yaml"))


def test_a_two_tier_plan_with_the_built_registry_validates_and_runs_its_year(hai_phong_2026, tmp_path):
    path = _two_tier_plan(tmp_path / "plan", hai_phong_2026)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    plan = load_plan(path)
    assert len(plan.registry.units) == 134 and plan.registry.root.kind == "thanh-pho"
    (tmp_path / "scenario.yaml").write_text("default: {submit: on_time}\nunits:\n"
                                            "  ubnd-dac-khu-bach-long-vi: {submit: never}\n", encoding="utf-8")
    engine = Engine(plan, store.connect(f"sqlite:///{tmp_path / 'planflow.db'}"))
    clock = first_start(plan)
    root = engine.start("hai-phong/2026", clock)
    actions = EngineActions(engine, root)
    asyncio.run(actions.drive(clock))
    asyncio.run(run_year(engine, load_scenario(tmp_path / "scenario.yaml", plan), root, clock, actions))
    with engine.db.connect() as conn:
        counts = latest_report(conn, root).data["total"]["counts"]
    assert counts["expected"] == 12 + 114  # sở, ban, ngành and communes, no district in between
    assert (counts["on_time"], counts["missing"]) == (125, 1)
    assert engine.instance(root).ended_at is not None


def test_without_o_the_registry_goes_to_stdout_and_the_summary_to_stderr(hai_phong_2026):
    result = planflow_registry("--province", "31", "--on", "2026-01-01")
    assert result.exit_code == 0
    assert yaml.safe_load(result.stdout) == yaml.safe_load(hai_phong_2026.read_text("utf-8"))
    assert "OK registry: thành phố Hải Phòng ngày 01/01/2026" in result.stderr


def test_a_users_departments_file_is_used_and_its_mistakes_named(tmp_path):
    mine = tmp_path / "so-ban-nganh.yaml"
    mine.write_text("valid: {from: 2025-07-01}\nbodies: []\ndepartments:\n"
                    "  - {code: so-noi-vu, name: Sở Nội vụ, groups: [coordinators]}\n"
                    "  - {code: so-ngoai-vu, name: Sở Ngoại vụ}\n"
                    "  - {code: van-phong-ubnd-tinh, name: 'Văn phòng UBND {level} {name}'}\n", encoding="utf-8")
    built = build_registry("31", dt.date(2026, 1, 1), mine)
    depts = {u["code"]: u for u in built.units if "departments" in u["groups"]}
    assert list(depts) == ["so-noi-vu", "so-ngoai-vu", "van-phong-ubnd-tinh"]
    assert depts["van-phong-ubnd-tinh"]["name"] == "Văn phòng UBND thành phố Hải Phòng"
    assert depts["so-ngoai-vu"]["head"] == "Giám đốc Sở Ngoại vụ"
    mine.write_text("departments:\n  - {code: so-y-te, name: Sở Y tế, leader: x}\n", encoding="utf-8")
    out = tmp_path / "out.yaml"
    result = planflow_registry("--province", "31", "--on", "2026-01-01", "--departments", str(mine), "-o", str(out))
    assert result.exit_code == 1 and "so-y-te" in result.output and "leader" in result.output
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize("args, said", [
    (["--province", "99", "--on", "2026-01-01"], "mã tỉnh 99 không có trong danh mục ngày 01/01/2026"),
    (["--province", "30", "--on", "2026-01-01"], "province code 30 is not in the list in force on 2026-01-01"),
    (["--province", "HD", "--on", "2022-10-01"], "mã tỉnh 'HD' không hợp lệ"),
    (["--province", "31", "--on", "2019-06-01"], "date 2019-06-01 is before the data"),
    (["--province", "31", "--on", "01/01/2026"], "--on '01/01/2026': ngày không hợp lệ"),
])
def test_an_unknown_province_or_a_day_outside_the_data_is_named_and_nothing_written(tmp_path, args, said):
    out = tmp_path / "registry.yaml"
    result = planflow_registry(*args, "-o", str(out))
    assert result.exit_code == 1, result.output
    assert said in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_day_of_the_merged_sos_and_a_stale_snapshot_are_said():
    built = build_registry(30, dt.date(2025, 3, 1))
    codes = {u["code"] for u in built.units}
    assert "so-nong-nghiep-va-moi-truong" in codes and "so-ke-hoach-va-dau-tu" not in codes
    assert "ban-tuyen-giao-va-dan-van-tinh-uy" in codes and len(built.province.districts) == 12
    assert built.province.warnings and "2023–2025" in built.province.warnings[0]
    assert "NOTE:" in built.header


def test_a_registry_the_loader_refuses_is_not_written(tmp_path):
    built = build_registry(31, dt.date(2026, 1, 1))
    broken = type(built)(**{**built.__dict__, "root": {**built.root, "unit": "ubnd-khong-co"}})
    out = tmp_path / "r.yaml"
    with pytest.raises(DefinitionError) as exc:
        write_registry(broken, out)
    assert "root.unit 'ubnd-khong-co' is not a unit" in str(exc.value) and str(out) in str(exc.value)
    assert not out.exists()
    with pytest.raises(RegistryBuildError, match="missing.yaml: không đọc được"):
        build_registry(31, dt.date(2026, 1, 1), tmp_path / "missing.yaml")


def test_every_province_of_both_lists_gets_a_code_for_each_unit():
    """All 63 provinces of the GSO list and the 34 of vietnam-provinces: 10 599 and 3 321 communes,
    each with a code of its own, even where two names differ only by diacritics (Trực Hùng, Trực Hưng)."""
    from planflow.registry_sources import province_codes

    communes = Counter()
    for day in (dt.date(2022, 10, 1), dt.date(2026, 1, 1)):
        for code in province_codes(day):
            built = build_registry(code, day)
            codes = [u["code"] for u in built.units]
            assert len(codes) == len(set(codes)), (code, day, Counter(codes).most_common(2))
            communes[day.year] += len(built.province.communes)
    assert (len(province_codes(dt.date(2022, 10, 1))), len(province_codes(dt.date(2026, 1, 1)))) == (63, 34)
    assert communes == {2022: 10599, 2026: 3321}
    built = build_registry("36", dt.date(2022, 10, 1))
    twins = {u["name"] for u in built.units if "--xa-truc-hung-" in u["code"]}
    assert twins == {"UBND xã Trực Hùng", "UBND xã Trực Hưng"}
