"""A unit registry for a province and a day, built from official lists (``planflow registry``).

The administrative units come from ``planflow.registry_sources`` (the GSO list until 30/6/2025:
districts and their communes; ``vietnam-provinces`` from 1/7/2025: communes straight under the
province). The province-level bodies and the sở, ban, ngành come from a short YAML a user edits
(``--departments FILE``; defaults per period in ``planflow/data/departments/``). The result is
written in the format ``planflow.loader.load_registry`` reads, with a ``root`` that records the
province-level body and the province's kind (``tinh`` / ``thanh-pho``) for the wording of letters.

Groups: ``issuer`` (the root body), ``report_to``, ``departments`` (+ ``recipients``; Sở Nội vụ also
``coordinators``), ``reviewers``, ``leaders``, ``districts`` (+ ``recipients``) and ``communes``
(whose ``parent`` is their district, or the root body when there are no districts; then they are
``recipients`` too). Codes are the same for every province (``so-noi-vu``, ``pct-ubnd-tinh``), so
a plan written once names the same units; the root is ``ubnd-<province>`` (``ubnd-tinh-hai-duong``,
``ubnd-thanh-pho-hai-phong``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from planflow.registry_sources import DATA, ProvinceUnits, RegistryBuildError, slug, unique_codes, units_on

DEPARTMENTS_DIR = DATA / "departments"
KEY_ORDER = ["code", "name", "kind", "groups", "parent", "admin_unit", "gso_code",
             "head", "email", "valid_from", "valid_to", "note"]
ENTRY_KEYS = {"code", "name", "kind", "groups", "parent", "head", "central", "note", "admin_unit",
              "valid_from", "valid_to"}
SECTIONS = ("Cơ quan ban hành, nơi nhận báo cáo, lãnh đạo, Đảng, MTTQ và đoàn thể", "Sở, ban, ngành",
            "UBND cấp huyện", "UBND cấp xã")

__all__ = ["BodiesSpec", "BuiltRegistry", "RegistryBuildError", "build_registry", "default_departments_file",
           "checked_text", "load_departments", "render", "units_on", "write_registry"]


@dataclass(frozen=True)
class BodiesSpec:
    """The province-level bodies and the sở, ban, ngành of a registry, as a user writes them."""

    file: str
    bodies: list[dict]
    departments: list[dict]
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    root_groups: list[str] = field(default_factory=lambda: ["issuer"])
    party_groups: list[str] = field(default_factory=lambda: ["report_to"])


@dataclass(frozen=True)
class BuiltRegistry:
    id: str
    name: str
    province: ProvinceUnits
    root: dict
    email_domain: str | None
    sections: list[tuple[str, list[dict]]]
    header: str
    day: dt.date

    @property
    def units(self) -> list[dict]:
        return [u for _, block in self.sections for u in block]


def _date(value, what: str, file: str) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise RegistryBuildError(f"{file}: {what} '{value}' không phải ngày YYYY-MM-DD / is not a date") from None


def _entries(raw: dict, key: str, file: str) -> list[dict]:
    entries = raw.get(key) or []
    if not isinstance(entries, list):
        raise RegistryBuildError(f"{file}: '{key}' phải là một danh sách / must be a list")
    for i, e in enumerate(entries):
        where = f"{file}: {key}[{i}]"
        if not isinstance(e, dict) or not e.get("code") or not e.get("name"):
            raise RegistryBuildError(f"{where}: mỗi mục cần code và name / every entry needs a code and a name")
        unknown = sorted(set(e) - ENTRY_KEYS)
        if unknown:
            raise RegistryBuildError(f"{where} ('{e['code']}'): khóa không biết / unknown key(s) {', '.join(unknown)}"
                                     f" (known: {', '.join(sorted(ENTRY_KEYS))})")
        if not isinstance(e.get("groups", []), list):
            raise RegistryBuildError(f"{where} ('{e['code']}'): groups phải là danh sách / groups must be a list")
    return entries


def bodies_spec(raw, file: str) -> BodiesSpec:
    """A ``BodiesSpec`` from a mapping (a departments YAML), checked: each problem names the entry."""
    if not isinstance(raw, dict):
        raise RegistryBuildError(f"{file}: cần một mapping có bodies và departments / needs bodies and departments")
    valid = raw.get("valid") or {}
    return BodiesSpec(file, _entries(raw, "bodies", file), _entries(raw, "departments", file),
                      _date(valid.get("from"), "valid.from", file), _date(valid.get("to"), "valid.to", file),
                      list((raw.get("root") or {}).get("groups", ["issuer"])),
                      list((raw.get("party") or {}).get("groups", ["report_to"])))


def load_departments(path: str | Path) -> BodiesSpec:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegistryBuildError(f"{path}: không đọc được / cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise RegistryBuildError(f"{path}: YAML không hợp lệ / not valid YAML: {exc}") from None
    return bodies_spec(raw, str(path))


def _covers(spec: BodiesSpec, day: dt.date) -> bool:
    return (spec.valid_from is None or spec.valid_from <= day) and (spec.valid_to is None or day <= spec.valid_to)


def default_departments_file(day: dt.date) -> Path:
    """The shipped default list of bodies in force on ``day``."""
    for path in sorted(DEPARTMENTS_DIR.glob("*.yaml")):
        if _covers(load_departments(path), day):
            return path
    raise RegistryBuildError(f"không có danh sách sở, ban, ngành mặc định cho ngày {day:%d/%m/%Y}: dùng --departments "
                             f"FILE / no default departments for {day.isoformat()}")


@dataclass(frozen=True)
class _Words:
    """What a province's bodies are called: {level}, {Level}, {party}, {name} in a spec's texts."""

    level: str
    party: str
    name: str

    def fill(self, text: str | None, where: str) -> str | None:
        if text is None:
            return None
        try:
            return str(text).format(level=self.level, Level=self.level.capitalize(), party=self.party, name=self.name)
        except (KeyError, IndexError, ValueError) as exc:
            raise RegistryBuildError(f"{where}: '{text}' dùng chỗ trống không biết / unknown placeholder {exc} "
                                     "(known: {level}, {Level}, {party}, {name})") from None


@dataclass(frozen=True)
class _Context:
    words: _Words
    root: str
    party: str
    valid_from: dt.date
    valid_to: dt.date | None
    email_domain: str | None

    def unit(self, code, name, kind, groups, parent, valid_to, head=None, **extra) -> dict:
        entry = {"code": code, "name": name, "kind": kind, "groups": list(groups), "parent": parent}
        if self.email_domain:
            entry["email"] = f"{code}@{self.email_domain}"
        entry.update({"valid_from": self.valid_from, "valid_to": valid_to})
        if head:
            entry["head"] = head
        entry.update({k: v for k, v in extra.items() if v is not None})
        return entry


def _spec_unit(ctx: _Context, e: dict, kind: str, groups: list[str], parent, default_to, where: str) -> dict:
    parent = {"root": ctx.root, "party": ctx.party}.get(parent, parent)
    valid_to = e["valid_to"] if "valid_to" in e else (None if e.get("central") else default_to)
    unit = ctx.unit(e["code"], ctx.words.fill(e["name"], where), kind, groups, parent, valid_to,
                    head=ctx.words.fill(e.get("head"), where), admin_unit=e.get("admin_unit"),
                    note=ctx.words.fill(e.get("note"), where))
    if "valid_from" in e:
        unit["valid_from"] = e["valid_from"]
    return unit


def _province_bodies(ctx: _Context, spec: BodiesSpec, pu: ProvinceUnits, end) -> list[dict]:
    w = ctx.words
    out = [ctx.unit(ctx.root, f"UBND {w.level} {w.name}", "ubnd-cap-tinh", spec.root_groups, None, pu.valid_to,
                    head=f"Chủ tịch UBND {w.level} {w.name}", admin_unit=pu.province.code),
           ctx.unit(ctx.party, f"{w.party} {w.name}", "dang", spec.party_groups, None, pu.valid_to,
                    head=f"Bí thư {w.party} {w.name}")]
    for i, e in enumerate(spec.bodies):
        out.append(_spec_unit(ctx, e, e.get("kind", "khac"), e.get("groups", []), e.get("parent"), end,
                              f"{spec.file}: bodies[{i}] ('{e['code']}')"))
    return out


def _departments(ctx: _Context, spec: BodiesSpec, end) -> list[dict]:
    out = []
    for i, e in enumerate(spec.departments):
        where = f"{spec.file}: departments[{i}] ('{e['code']}')"
        groups = ["departments", "recipients"] + [g for g in e.get("groups", []) if g not in ("departments",
                                                                                               "recipients")]
        unit = _spec_unit(ctx, e, e.get("kind", "so-ban-nganh"), groups, e.get("parent", "root"), end, where)
        unit.setdefault("head", f"Giám đốc {unit['name']}")
        out.append(unit)
    return out


def _admin_units(ctx: _Context, pu: ProvinceUnits) -> tuple[list[dict], list[dict]]:
    org_codes = unique_codes([f"ubnd-{slug(d.name)}" for d in pu.districts], [d.gso_code for d in pu.districts])
    org_of = {}
    districts = []
    for d, code in zip(pu.districts, org_codes):
        org_of[d.code] = code
        districts.append(ctx.unit(code, d.body_name, "ubnd-cap-huyen", ["districts", "recipients"], ctx.root,
                                  pu.valid_to, head=f"Chủ tịch {d.body_name}", admin_unit=d.code,
                                  gso_code=d.gso_code))
    groups = ["communes"] if pu.districts else ["communes", "recipients"]
    communes = [ctx.unit(f"ubnd-{c.code}", c.body_name, "ubnd-cap-xa", groups, org_of.get(c.parent, ctx.root),
                         pu.valid_to, head=f"Chủ tịch {c.body_name}", admin_unit=c.code, gso_code=c.gso_code)
                for c in pu.communes]
    return districts, communes


def _spec_for(day: dt.date, departments) -> BodiesSpec:
    if isinstance(departments, BodiesSpec):
        return departments
    spec = load_departments(departments or default_departments_file(day))
    if not _covers(spec, day):
        raise RegistryBuildError(
            f"{spec.file}: danh sách này áp dụng {spec.valid_from or '…'} – {spec.valid_to or '…'}, không gồm ngày "
            f"{day:%d/%m/%Y} / this list does not cover {day.isoformat()}")
    return spec


def build_registry(code, day: dt.date, departments: Path | str | BodiesSpec | None = None, *,
                   registry_id: str | None = None, name: str | None = None, email_domain: str | None = None,
                   valid_from: dt.date | None = None, header: str | None = None) -> BuiltRegistry:
    """The registry of province ``code`` (official code: 30 Hải Dương, 31 Hải Phòng) on ``day``.

    ``departments``: a departments YAML, a ``BodiesSpec``, or None for the default of the period.
    ``valid_from``: every unit's start (default: the later of the list's and the spec's start)."""
    pu = units_on(code, day)
    spec = _spec_for(day, departments)
    proper = pu.province.proper_name
    words = _Words(pu.word, "Tỉnh ủy" if pu.kind == "tinh" else "Thành ủy", proper)
    start = valid_from or max(d for d in (pu.valid_from, spec.valid_from) if d)
    ends = [d for d in (pu.valid_to, spec.valid_to) if d]
    domain = f"{slug(proper)}.example.org" if email_domain is None else (email_domain or None)
    ctx = _Context(words, f"ubnd-{pu.province.code}", f"{slug(words.party)}-{slug(proper)}", start,
                   pu.valid_to, domain)
    districts, communes = _admin_units(ctx, pu)
    sections = [(SECTIONS[0], _province_bodies(ctx, spec, pu, min(ends) if ends else None)),
                (SECTIONS[1], _departments(ctx, spec, min(ends) if ends else None))]
    sections += [(SECTIONS[2], districts)] if districts else []
    sections.append((SECTIONS[3], communes))
    root = {"unit": ctx.root, "kind": pu.kind, "name": proper, "gso_code": pu.province.gso_code, "party": ctx.party}
    return BuiltRegistry(registry_id or f"{slug(proper)}-{day.isoformat()}",
                         name or f"Cơ quan, đơn vị {pu.word} {proper} ngày {day:%d/%m/%Y}", pu, root, domain,
                         sections, header if header is not None else _header(pu, spec, day, domain), day)


def _header(pu: ProvinceUnits, spec: BodiesSpec, day: dt.date, domain: str | None) -> str:
    tiers = (f"{len(pu.districts)} district-level units, {len(pu.communes)} communes (three tiers)" if pu.districts
             else f"{len(pu.communes)} communes straight under the {pu.word} (two tiers, no districts)")
    lines = [f"# Unit registry: cơ quan, đơn vị {pu.word} {pu.province.proper_name} on {day:%d/%m/%Y}.",
             f"# GENERATED by `planflow registry --province {pu.province.gso_code} --on {day.isoformat()}`"
             " (planflow/registry_build.py).",
             "# Sources:",
             f"#   - administrative units: {pu.source}: {tiers};",
             f"#   - province-level bodies and sở, ban, ngành: {Path(spec.file).name} (its sources are written there).",
             "# valid_from/valid_to: the period of the list and of the bodies' file, not each body's founding date."]
    lines += [f"# NOTE: {w}" for w in pu.warnings]
    if domain:
        lines.append(f"# email: <code>@{domain} -- a reserved example domain; real addresses are configured per "
                     "deployment.")
    return "\n".join(lines) + "\n"


def scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    text = yaml.safe_dump(value, allow_unicode=True, width=10_000)
    return text.removesuffix("\n...\n").rstrip("\n")


def render(built: BuiltRegistry) -> str:
    """The registry as YAML: one block per unit, keys in a fixed order, a comment per section."""
    lines = [built.header.rstrip("\n"), f"id: {built.id}", f"name: {scalar(built.name)}",
             f"province: {built.province.province.code}",
             "root:  # the province-level body and the province's kind (tinh | thanh-pho)"]
    lines += [f"  {k}: {scalar(v)}" for k, v in built.root.items()]
    if built.email_domain:
        lines.append(f"email_domain: {built.email_domain}")
    lines.append("units:")
    for title, block in built.sections:
        lines += ["", f"  # --- {title} ({len(block)}) ---"]
        for u in block:
            keys = [k for k in KEY_ORDER if k in u]
            lines += [f"  {'- ' if i == 0 else '  '}{k}: {scalar(u[k])}" for i, k in enumerate(keys)]
    text = "\n".join(lines) + "\n"
    if yaml.safe_load(text)["units"] != built.units:
        raise RegistryBuildError(f"registry '{built.id}': the YAML written does not read back as built")
    return text


def checked_text(built: BuiltRegistry, file_name: str = "registry.yaml") -> str:
    """The registry's YAML once the loader accepts it: its rules run on a copy in a temporary
    folder; otherwise ``DefinitionError``, its problems naming ``file_name`` and the unit."""
    import tempfile
    from dataclasses import replace

    from planflow.loader import load_registry
    from planflow.problems import DefinitionError

    text = render(built)
    with tempfile.TemporaryDirectory(prefix="planflow-registry-") as tmp:
        trial = Path(tmp) / Path(file_name).name
        trial.write_text(text, encoding="utf-8")
        try:
            load_registry(trial)
        except DefinitionError as exc:
            raise DefinitionError([replace(p, file=file_name) for p in exc.problems]) from None
    return text


def write_registry(built: BuiltRegistry, path: str | Path) -> Path:
    """Write the registry to ``path`` once the loader accepts it; nothing is written otherwise."""
    path = Path(path)
    text = checked_text(built, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
