"""Official lists of administrative units, by province code and date.

Two sources, chosen by the date:

* until 30/6/2025: the GSO list (Tổng cục Thống kê, https://danhmuchanhchinh.gso.gov.vn/) as copied
  by daohoangson/dvhcvn @ 71996c5, data date 01/10/2022, shipped as ``planflow/data/
  gso-admin-units-2022-10-01.json`` (63 provinces, 705 district-level units, 10 599 communes) —
  three tiers: the province, its districts, their communes;
* from 1/7/2025 (Luật TCCQĐP 72/2025/QH15, NQ 202/2025/QH15): the 34 provinces and 3 321
  communes of the ``vietnam-provinces`` package — two tiers, communes straight under the province.

``units_on(code, day)`` gives a province's units; codes, names and kinds are the same whichever
source, so a registry built from either reads the same way. Codes are ASCII slugs: a district
``tp-hai-duong`` (its type abbreviated), a commune ``tp-hai-duong--phuong-cam-thuong`` under a
district (names repeat across districts) or ``phuong-thuy-nguyen`` under a province.
"""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
GSO_FILE = DATA / "gso-admin-units-2022-10-01.json"
GSO_SOURCE = ("GSO (danhmuchanhchinh.gso.gov.vn) via daohoangson/dvhcvn @ 71996c5, "
              "data date 01/10/2022")
REFORM_DAY = dt.date(2025, 7, 1)  # two tiers: Luật TCCQĐP 72/2025/QH15, NQ 202/2025/QH15
GSO_FIRST_DAY = dt.date(2022, 1, 1)  # the 2019–2021 rearrangements in force; the snapshot is of 01/10/2022
GSO_STALE_AFTER = dt.date(2024, 10, 31)  # the 2023–2025 rearrangements (most from 1/11/2024–1/1/2025) are not in it

DISTRICT_TYPES = {"thành phố": "tp", "thị xã": "tx", "huyện": "huyen", "quận": "quan"}
COMMUNE_TYPES = ("thị trấn", "phường", "xã", "đặc khu")
PROVINCE_TYPES = {"tỉnh": "tinh", "thành phố trung ương": "thanh-pho", "thành phố": "thanh-pho"}
PROVINCE_WORD = {"tinh": "tỉnh", "thanh-pho": "thành phố"}  # kind → word after "UBND"


class RegistryBuildError(ValueError):
    """A province code or a date the official lists do not hold; says which, in Vietnamese and English."""


@dataclass(frozen=True)
class AdminUnit:
    """One administrative unit: ``kind`` its type word in lower case (tỉnh, thành phố, huyện, xã …)."""

    code: str
    gso_code: str
    name: str  # as the list writes it, e.g. "Thành phố Hải Dương", "Xã Hồng Phong"
    kind: str
    parent: str | None = None

    @property
    def proper_name(self) -> str:
        """The name without its type word: "Hải Dương"."""
        return strip_type(self.name, self.kind)

    @property
    def body_name(self) -> str:
        """The name of its People's Committee: "UBND thành phố Hải Dương"."""
        return f"UBND {self.kind} {self.proper_name}"


@dataclass(frozen=True)
class ProvinceUnits:
    """A province's units on a day: two tiers when ``districts`` is empty."""

    province: AdminUnit
    kind: str  # "tinh" or "thanh-pho"
    districts: list[AdminUnit]
    communes: list[AdminUnit]
    source: str
    valid_from: dt.date
    valid_to: dt.date | None
    counts: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def tiers(self) -> int:
        return 3 if self.districts else 2

    @property
    def word(self) -> str:
        """"tỉnh" or "thành phố"."""
        return PROVINCE_WORD[self.kind]


def slug(text: str) -> str:
    """ASCII, lower case, hyphens: "Phường Cẩm Thượng" → "phuong-cam-thuong"."""
    text = text.replace("đ", "d").replace("Đ", "D")
    ascii_text = unicodedata.normalize("NFD", text).encode("ascii", "ignore").decode()
    return "-".join("".join(c if c.isalnum() else " " for c in ascii_text.lower()).split())


def unique_codes(codes: list[str], official: list[str]) -> list[str]:
    """``codes`` with the official code added to each one that is used twice ("xa-truc-hung-13993"):
    names that differ only by their diacritics (Trực Hùng, Trực Hưng) give the same slug."""
    seen = Counter(codes)
    return [code if seen[code] == 1 else f"{code}-{number}" for code, number in zip(codes, official)]


def strip_type(name: str, kind: str) -> str:
    return name[len(kind) + 1:] if name.lower().startswith(kind + " ") else name


def _kind_of(name: str, type_word: str, known) -> str:
    kind = type_word.lower()
    if kind not in known:
        kind = next((k for k in known if name.lower().startswith(k + " ")), kind)
    return kind


def _province_unit(gso_code: str, name: str, type_word: str) -> tuple[AdminUnit, str]:
    kind_word = _kind_of(name, type_word, PROVINCE_TYPES)
    kind = PROVINCE_TYPES.get(kind_word, "tinh")
    word = PROVINCE_WORD[kind]
    proper = strip_type(strip_type(name, "thành phố"), "tỉnh")
    full = f"{word[0].upper()}{word[1:]} {proper}"
    return AdminUnit(f"{kind}-{slug(proper)}", gso_code, full, word), kind


@lru_cache(maxsize=1)
def _gso() -> dict[str, dict]:
    data = json.loads(GSO_FILE.read_text(encoding="utf-8"))["data"]
    return {p["level1_id"]: p for p in data}


def _gso_units(code: str) -> ProvinceUnits:
    p = _gso()[code]
    province, kind = _province_unit(code, p["name"], p["type"])
    districts, communes = [], []
    kinds = [_kind_of(l2["name"], l2["type"], DISTRICT_TYPES) for l2 in p["level2s"]]
    d_codes = unique_codes([f"{DISTRICT_TYPES.get(k, slug(k))}-{slug(strip_type(l2['name'], k))}"
                            for k, l2 in zip(kinds, p["level2s"])], [l2["level2_id"] for l2 in p["level2s"]])
    for l2, d_kind, d_code in zip(p["level2s"], kinds, d_codes):
        districts.append(AdminUnit(d_code, l2["level2_id"], l2["name"], d_kind, province.code))
        c_codes = unique_codes([slug(l3["name"]) for l3 in l2["level3s"]], [l3["level3_id"] for l3 in l2["level3s"]])
        for l3, c_code in zip(l2["level3s"], c_codes):
            c_kind = _kind_of(l3["name"], l3["type"], COMMUNE_TYPES)
            communes.append(AdminUnit(f"{d_code}--{c_code}", l3["level3_id"], l3["name"], c_kind, d_code))
    return ProvinceUnits(province, kind, districts, communes, GSO_SOURCE, GSO_FIRST_DAY, REFORM_DAY - dt.timedelta(1),
                         {"districts": len(districts), "communes": len(communes)})


def _reform_units(code: str) -> ProvinceUnits:
    import vietnam_provinces as vp

    p = vp.Province.from_code(vp.ProvinceCode(int(code)))
    province, kind = _province_unit(code, p.name, p.division_type.value)
    wards = sorted(vp.Ward.iter_by_province(p.code), key=lambda w: int(w.code))
    numbers = [f"{int(w.code):05d}" for w in wards]
    communes = [AdminUnit(c_code, number, w.name, _kind_of(w.name, w.division_type.value, COMMUNE_TYPES), province.code)
                for w, c_code, number in zip(wards, unique_codes([slug(w.name) for w in wards], numbers), numbers)]
    source = f"vietnam-provinces {vp.__version__} (data {vp.__data_version__})"
    return ProvinceUnits(province, kind, [], communes, source, REFORM_DAY, None, {"communes": len(communes)})


def province_codes(day: dt.date) -> list[str]:
    """The official province codes of the list in force on ``day``."""
    if day >= REFORM_DAY:
        import vietnam_provinces as vp

        return [f"{int(p.code):02d}" for p in vp.Province.iter_all()]
    return sorted(_gso())


def units_on(code: str | int, day: dt.date) -> ProvinceUnits:
    """The units of the province with official code ``code`` (e.g. 30, "31") on ``day``."""
    text = str(code).strip()
    if not text.isdigit():
        raise RegistryBuildError(f"mã tỉnh '{code}' không hợp lệ: cần mã số chính thức, ví dụ 30 (Hải Dương), "
                                  f"31 (Hải Phòng) / province code '{code}' is not an official numeric code")
    text = f"{int(text):02d}"
    if day < GSO_FIRST_DAY:
        raise RegistryBuildError(
            f"ngày {day:%d/%m/%Y}: chưa có danh mục đơn vị hành chính trước {GSO_FIRST_DAY:%d/%m/%Y} "
            f"(có: danh mục TCTK 01/10/2022 cho {GSO_FIRST_DAY:%d/%m/%Y}–30/06/2025, vietnam-provinces từ "
            f"01/07/2025) / date {day.isoformat()} is before the data ({GSO_FIRST_DAY.isoformat()} on)")
    known = province_codes(day)
    if text not in known:
        which = "34 tỉnh, thành phố từ 01/07/2025" if day >= REFORM_DAY else "63 tỉnh, thành phố đến 30/06/2025"
        raise RegistryBuildError(
            f"mã tỉnh {text} không có trong danh mục ngày {day:%d/%m/%Y} ({which}; có: {', '.join(known)}) / "
            f"province code {text} is not in the list in force on {day.isoformat()}")
    if day >= REFORM_DAY:
        return _reform_units(text)
    units = _gso_units(text)
    if day > GSO_STALE_AFTER:
        units = replace(units, warnings=(
            f"danh mục TCTK 01/10/2022 chưa có các sắp xếp đơn vị hành chính 2023–2025 (phần lớn có hiệu lực "
            f"01/11/2024–01/01/2025): kiểm tra lại danh sách xã ngày {day:%d/%m/%Y} / the 01/10/2022 list predates "
            "the 2023–2025 rearrangements: check the communes",))
    return units
