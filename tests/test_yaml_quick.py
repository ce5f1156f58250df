"""The quick read of a registry (``planflow.yaml_quick``) gives what the reader with lines gives,
or declines; a registry with a problem is said exactly as before; the calendar imports only its
country's module of the ``holidays`` package."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import holidays
import pytest
from pydantic import ValidationError

import planflow.yaml_quick as yaml_quick
from planflow.country_holidays import country_holidays
from planflow.loader import DefinitionError, load_registry
from planflow.model import Registry
from planflow.yaml_events import MAX_DEPTH, build
from planflow.yaml_quick import quick_load
from planflow.yaml_reader import load_with_lines, strip_lines

REPO = Path(__file__).resolve().parents[1]
REGISTRIES = sorted((REPO / "definitions" / "registries").glob("*.yaml"))
BROKEN = sorted((REPO / "tests" / "broken" / "registries").glob("*.yaml"))


def same(a, b) -> bool:
    """Equal, of the same types, mappings in the same order."""
    if type(a) is not type(b) and not (isinstance(a, dict) and isinstance(b, dict)) \
            and not (isinstance(a, list) and isinstance(b, list)):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


ACCEPTED = [
    "id: r\nname: Sở Nội vụ\nunits:\n- code: so-noi-vu\n  groups: [departments, recipients]\n",
    "gso_code: '30'\ncode: \"001\"\n",  # digits quoted: text in both
    "valid_from: 2025-07-01\nvalid_to:\nok: true\nno_value: ~\nnull_word: null\n",
    "name: Thành phố Hải Phòng # a comment\nnote: 'yes, quoted'\n",
    "folded: >-\n  one\n  line\nplain: a\n  b\nkept: |-\n  one line\n",
    "flow: {a: x, b: [c, d]}\nempty_list: []\nempty_map: {}\n",
    "escaped: \"x\\ty\\u00e9\\\\\"\nwindows: a\r\nnext: b\r\n",
    "name: Ủy ban nhân dân xã Tân Tiến — 'quoted' inside\n",
    "a: 2022-1-5\n",  # text in YAML 1.1 too (a date needs two digits each)
]

DECLINED = [
    "a: yes", "a: No", "a: on", "a: 010", "a: 0o10", "a: 1e3", "a: 1:20", "a: 12", "a: 1.5", "a: .inf",
    "a: 2022-02-30", "a: 2022-01-05 08:00:00", "a: '2022-13-45'", "a: 'null'", "a: ''",
    "a: &x 1\nb: *x", "a: !!str 1", "a: !foo x", "<<: {a: 1}\nb: 2", "__line__: 3", "1: a", "? [a]\n: b",
    "a: 1\na: 2", "a: 1\n---\nb: 2", "- a\n- b", "", "just text", "%YAML 1.1\n---\na: b",
    "a:\tb", "a: b\u2028c", "a: b\x85c", "a: b\x07c", "a: [unclosed", "= : x", "yes: x",
    "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
    # found by comparing the two readers on generated texts: YAML 1.1 and 1.2 part in flow collections
    "k: [?a]", "k: {?a}", "k: [a:]", "k: {a:}", "k: [-:]", "k: [|a]", "k: [>a]", "k: [x, ?]", "a: b\n\ufeffc: d",
    "k: [a:?]", "k: {x: 0:?}", "k: http://example.org",
    "k: |\n  more", "k: >\n  more", "k:\n  - |\n", "text: |\n  two\n  lines\n",  # chomped otherwise at the end
]


@pytest.mark.parametrize("text", ACCEPTED + DECLINED)
def test_the_quick_data_is_the_data_with_lines_or_none(text):
    quick = quick_load(text)
    if quick is not None:
        assert same(quick, strip_lines(build(text)))


@pytest.mark.parametrize("text", ACCEPTED)
def test_plain_texts_are_read_quickly(text):
    assert quick_load(text) is not None


@pytest.mark.parametrize("text", DECLINED)
def test_what_yaml_1_1_may_read_otherwise_is_left_to_the_reader_with_lines(text):
    assert quick_load(text) is None


def test_a_quoted_date_is_the_one_difference_let_through():
    """A date in both when plain; quoted, text with lines and a date here — which is why only
    the registry, whose fields take a date either way or refuse one, is read quickly."""
    assert quick_load('d: "2025-07-01"') == {"d": dt.date(2025, 7, 1)}
    assert strip_lines(build('d: "2025-07-01"')) == {"d": "2025-07-01"}
    text = 'id: r\nname: "2025-07-01"\nunits: []'
    with pytest.raises(ValidationError):  # a text field refuses it: the loader reads the file again with lines
        Registry.model_validate(quick_load(text))
    assert Registry.model_validate(strip_lines(build(text))).name == "2025-07-01"


@pytest.mark.parametrize("path", REGISTRIES, ids=lambda p: p.name)
def test_the_shipped_registries_load_alike(path):
    text = path.read_text(encoding="utf-8")
    quick = quick_load(text)
    assert quick is None or same(quick, strip_lines(build(text)))
    assert load_registry(path) == Registry.model_validate(strip_lines(load_with_lines(path, limit=4 << 20)))


def test_a_registry_planflow_builds_is_read_quickly():
    """`planflow registry`'s output (the Hải Dương one has hand-written notes with URLs: declined)."""
    assert quick_load((REPO / "definitions" / "registries" / "hai-phong-2026.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
def test_a_broken_registry_is_said_as_without_the_quick_read(path, monkeypatch):
    with pytest.raises(DefinitionError) as quick:
        load_registry(path)
    monkeypatch.setattr(yaml_quick, "yaml_rs", None)  # every file read with lines
    with pytest.raises(DefinitionError) as with_lines:
        load_registry(path)
    assert quick.value.problems == with_lines.value.problems
    assert all(p.line for p in quick.value.problems)


@pytest.mark.parametrize("year", [2019, 2022, 2026])
@pytest.mark.parametrize("language", [None, "vi", "en_US"])
def test_country_holidays_is_the_packages(year, language):
    ours = country_holidays("VN", subdiv=None, years=year, language=language)
    theirs = holidays.country_holidays("VN", years=year, language=language)
    assert dict(ours) == dict(theirs) and ours.weekend_workdays == theirs.weekend_workdays
    assert type(ours) is type(theirs)
    with pytest.raises(NotImplementedError):
        country_holidays("XX", subdiv=None, years=year, language=language)


def test_a_calendar_imports_its_country_alone():
    code = ("import sys, datetime; from planflow.calendar import BusinessCalendar; "
            "cal = BusinessCalendar.load('vn-civil-service'); "
            "assert not cal.is_working_day(datetime.date(2022, 9, 2)); "
            "print(sorted(m for m in sys.modules if m.startswith('holidays.countries')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "['holidays.countries.vietnam']"


CHARS = "-?:,[]{}#|>%@ a'\"`~=<.0"
CONTEXTS = ["k: {}", "k: [{}]", "- {}", "k: {{{}}}", "{}: v", "k: [x, {}]", "k:\n  - {}", "k: {{x: {}}}",
            "k: {}\n  more", "k:\n  {}\n", "k: '{}'", 'k: "{}"', "k: [a,\n  {}]"]


def test_short_texts_of_yaml_indicators_read_alike_or_are_declined():
    """Every one- and two-character text of YAML's indicators, in block and flow places: what is
    read quickly is what the reader with lines gives (this comparison, at three characters, found
    the flow and block-scalar cases declined above)."""
    texts = [c.format(a + b) for a in CHARS for b in ["", *CHARS] for c in CONTEXTS]
    for text in texts:
        quick = quick_load(text)
        if quick is not None:
            assert same(quick, strip_lines(build(text))), text
