"""``holidays.country_holidays`` with only the asked country's module imported.

The ``holidays`` package loads a country lazily, but through ``holidays.countries``, whose
``__init__`` imports all ~280 country modules: ≈ 0.1–0.2 s of CPU the first time a process
reads a calendar (the first plan loaded, each flow run). Here the country's own module
(``holidays/countries/vietnam.py``) is loaded under the name the package gives it, so the class,
and so every day and name, is the package's own; a later ``import holidays.countries`` finds it
there and uses it. Anything not found that way (a name the package's registry does not list, a
layout it no longer has) goes to ``holidays.country_holidays`` itself, errors included.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import holidays
from holidays.registry import COUNTRIES, IMPORT_LOCK

_PACKAGE = "holidays.countries"


def country_holidays(country: str, *, subdiv: str | None, years: int, language: str | None) -> holidays.HolidayBase:
    """What ``holidays.country_holidays(country, subdiv=…, years=…, language=…)`` gives."""
    entity = _entity(country)
    if entity is None:
        return holidays.country_holidays(country, subdiv=subdiv, years=years, language=language)
    # the arguments country_holidays passes, with its defaults
    return entity(years=years, subdiv=subdiv, expand=True, observed=True, prov=None, state=None,
                  language=language, categories=None)


def _entity(country: str):
    """The package's class named ``country`` (VN, VNM or Vietnam), its module alone loaded; None
    when it cannot be found so."""
    module_name = next((m for m, names in COUNTRIES.items() if country in names), None)
    if module_name is None:
        return None
    full = f"{_PACKAGE}.{module_name}"
    with IMPORT_LOCK:  # the lock the package's own lazy loader takes
        module = sys.modules.get(full)
        if module is None:
            path = Path(holidays.__file__).parent / "countries" / f"{module_name}.py"
            spec = importlib.util.spec_from_file_location(full, path)
            if spec is None or spec.loader is None or not path.is_file():
                return None
            module = importlib.util.module_from_spec(spec)
            sys.modules[full] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[full]
                raise
    return getattr(module, country, None)
