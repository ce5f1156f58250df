"""Hostile or broken input: every case is refused with one located message, exit 1, no
traceback, nothing written, within a few seconds.

The corpus is ``tests/broken/``: ``base/`` holds a small valid plan with its registry,
forms, calendar and scenario; ``definitions/``, ``registries/``, ``forms/``,
``calendars/`` and ``scenarios/`` hold each of them with one thing broken (the file's
first line says what). ``cases.json`` lists every case: its file, what it stands for
(``as``: a registry goes into a copy of the base plan, a scenario into ``simulate``), the
text on the line the message must name (``at``), the element or unit it must name and
words it must say. Files that cannot be kept as text (binary, other encodings, huge,
folders, pipes) are made by the tests below.

Cases run through the CLI in-process (typer's CliRunner: the same command, its output
and exit code, without a Python start per case); a few run as real subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planflow.flows.cli import app

CORPUS = Path(__file__).resolve().parent / "broken"
BASE_PLAN = CORPUS / "base" / "plan.yaml"
CASES = json.loads((CORPUS / "cases.json").read_text(encoding="utf-8"))
FEW_SECONDS = 3.0
REPO = CORPUS.parents[1]


def line_of(text: str, needle: str) -> int:
    """The number of the line that is ``needle``, or else of the only line that holds it."""
    lines = text.splitlines()
    exact = [i for i, line in enumerate(lines, start=1) if line == needle]
    hits = exact or [i for i, line in enumerate(lines, start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def base_plan_with(folder: Path, case: dict, target: Path) -> Path:
    """A copy of the base plan (in ``folder``) that uses ``target`` as its registry, form or calendar."""
    text = BASE_PLAN.read_text(encoding="utf-8")
    base = BASE_PLAN.parent
    text = text.replace("registry: registry.yaml", f"registry: {base / 'registry.yaml'}")
    text = text.replace("self-evaluation: forms/self-evaluation.yaml", f"self-evaluation: {base / 'forms/self-evaluation.yaml'}")
    text = text.replace("review-decision: forms/review-decision.yaml", f"review-decision: {base / 'forms/review-decision.yaml'}")
    if case["as"] == "registry":
        text = text.replace(f"registry: {base / 'registry.yaml'}", f"registry: {target}")
    elif case["as"] == "form":
        slot = case.get("slot", "self-evaluation")
        text = text.replace(f"{slot}: {base / 'forms' / slot}.yaml", f"{slot}: {target}")
    elif case["as"] == "calendar":
        text = text.replace("year: 2022\n", f"year: 2022\ncalendar: {target}\n")
    path = folder / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run(args: list[str], cwd: Path) -> tuple[int, str, float]:
    """The CLI in-process, from ``cwd``: (exit code, everything it printed, seconds)."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        started = time.perf_counter()
        result = CliRunner().invoke(app, args)
        took = time.perf_counter() - started
    finally:
        os.chdir(here)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: {type(result.exception).__name__}: {result.exception}") from result.exception
    return result.exit_code, result.stdout + result.stderr, took


def refused(args: list[str], cwd: Path) -> str:
    """Run; assert the refusal everyone gets: exit 1, no traceback, quick, nothing left in ``cwd``."""
    code, said, took = run(args, cwd)
    assert code == 1, said
    assert "Traceback" not in said and said.startswith("error "), said
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", said), f"a control character reaches the terminal: {said!r}"
    assert took < FEW_SECONDS, f"{args} took {took:.1f} s"
    assert list(cwd.iterdir()) == [], f"{args} wrote {list(cwd.iterdir())}"
    return said


def command_for(case: dict, tmp_path: Path) -> list[str]:
    target = CORPUS / case["file"]
    kind = case.get("as", "definition")
    if kind == "definition":
        return ["validate", str(target)]
    if kind == "scenario":
        return ["simulate", str(BASE_PLAN), "--scenario", str(target), "--out", str(tmp_path / "cwd" / "out")]
    folder = tmp_path / "plan"
    folder.mkdir()
    return ["validate", str(base_plan_with(folder, case, target))]


@pytest.mark.parametrize("case", CASES, ids=[c["file"].removesuffix(".yaml") for c in CASES])
def test_every_case_of_the_corpus_is_refused_with_its_place(case, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    said = refused(command_for(case, tmp_path), cwd)
    name = Path(case["file"]).name
    lines = said.splitlines()
    if "at" in case:
        line = line_of((CORPUS / case["file"]).read_text(encoding="utf-8"), case["at"])
        lines = [x for x in lines if f"{name}:{line}:" in x]
        assert lines, f"no message names {name}:{line}:\n{said}"
    elif case.get("as", "definition") == "definition":
        lines = [x for x in lines if name in x]
        assert lines, f"no message names {name}:\n{said}"
    if "element" in case:
        lines = [x for x in lines if f"'{case['element']}'" in x]
        assert lines, f"no message at that place names '{case['element']}':\n{said}"
    assert any(case["says"] in x for x in lines), f"no message at that place says {case['says']!r}:\n{said}"


@pytest.mark.parametrize("case", [c for c in CASES if c.get("simulate")], ids=lambda c: c["file"])
def test_simulate_refuses_before_it_starts(case, tmp_path):
    """What only failed once the year ran (a cron, a time zone) stops simulate before Prefect starts."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    said = refused(["simulate", str(CORPUS / case["file"]), "--out", str(cwd / "out")], cwd)
    assert case["says"] in said and Path(case["file"]).name in said


def test_the_corpus_covers_every_kind_of_file():
    kinds = {c.get("as", "definition") for c in CASES}
    assert kinds == {"definition", "registry", "form", "calendar", "scenario"}
    assert len(CASES) >= 50
    # every corpus file is a case, and the base files are valid
    files = {str(p.relative_to(CORPUS)) for p in CORPUS.glob("*/*.yaml") if p.parent.name != "base"}
    assert files == {c["file"] for c in CASES}
    code, said, _ = run(["validate", str(BASE_PLAN)], CORPUS)
    assert code == 0, said


# --- files that are not YAML text --------------------------------------------------------

def _made(tmp_path: Path, name: str, content: bytes | None) -> Path:
    path = tmp_path / "files" / name
    path.parent.mkdir(exist_ok=True)
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
LATIN1 = "id: ke-hoach\nname: Kế hoạch thử\n".encode("utf-8").replace(b"\xe1\xba\xbf", b"\xe9")
UTF16 = "id: ke-hoach\nname: Kế hoạch\n".encode("utf-16")

MADE = [  # (name, content, as what, words the message says, line it names or None)
    ("binary.yaml", PNG, "definition", "binary file", 3),  # the line of the first NUL byte
    ("latin-1.yaml", b"# ok\n" + LATIN1, "definition", "not UTF-8", 3),
    ("utf-16.yaml", UTF16, "definition", "binary file", 1),
    ("folder.yaml", None, "definition", "is a folder", None),
    ("binary-registry.yaml", PNG, "registry", "binary file", 3),
    ("latin-1-form.yaml", LATIN1, "form", "not UTF-8", 2),
    ("binary-calendar.yaml", PNG, "calendar", "binary file", 3),
    ("folder-calendar.yaml", None, "calendar", "is a folder", None),
    ("binary-scenario.yaml", PNG, "scenario", "binary file", 3),
    ("folder-scenario", None, "scenario", "is a folder", None),
    ("control-character.yaml", b"id: x\nname: a\x01b\n", "definition", "control character", 2),
]


@pytest.mark.parametrize(("name", "content", "kind", "says", "line"), MADE, ids=[m[0] for m in MADE])
def test_a_file_that_is_not_yaml_text_is_refused(tmp_path, name, content, kind, says, line):
    target = _made(tmp_path, name, content)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    said = refused(command_for({"file": str(target), "as": kind}, tmp_path), cwd)
    assert says in said
    if line is not None:  # the message names the file and the line
        assert f"{name}:{line}:" in said, said
    else:  # a folder is named where the plan refers to it (a definition: as given)
        assert name in said, said


def test_a_missing_file_and_a_pipe_are_refused(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert "file not found" in refused(["validate", str(tmp_path / "nowhere.yaml")], cwd)
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # reading it would wait forever for a writer
    assert "not a regular file" in refused(["validate", str(fifo)], cwd)
    plan = base_plan_with(tmp_path, {"as": "registry"}, Path("/dev/zero"))
    assert "not a regular file" in refused(["validate", str(plan)], cwd)


def test_a_file_beyond_the_size_limit_is_refused_at_once(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    big = tmp_path / "big.yaml"
    element = "  - {id: step%d, type: serviceTask, stage: s, handler: record, next: nowhere}\n"
    with big.open("w", encoding="utf-8") as f:
        f.write("id: big\nelements:\n")
        n = 0
        while f.tell() < 5 * 1024 * 1024:
            f.write(element % n)
            n += 1
    said = refused(["validate", str(big)], cwd)
    assert "big.yaml" in said and "5.0 MiB" in said and "larger than" in said
    registry = tmp_path / "registry.yaml"
    registry.write_text("# padding\n" * (1024 * 1024), encoding="utf-8")  # 10 MiB of comments
    said = refused(["validate", str(base_plan_with(tmp_path, {"as": "registry"}, registry))], cwd)
    assert "registry" in said and "larger than" in said


def test_nesting_beyond_the_limit_is_refused(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for depth in (50, 100_000):
        path = tmp_path / f"deep-{depth}.yaml"
        path.write_text("id: deep\nelements: " + "[" * depth + "]" * depth + "\n", encoding="utf-8")
        said = refused(["validate", str(path)], cwd)
        assert f"deep-{depth}.yaml:2:" in said and "nest" in said


def _chain(n: int, broken: bool) -> str:
    """A definition whose main process is a chain of ``n`` service tasks (each pointing to a
    missing element when ``broken``)."""
    text = (BASE_PLAN.read_text(encoding="utf-8").split("elements:")[0]
            .replace("registry: registry.yaml", f"registry: {BASE_PLAN.parent / 'registry.yaml'}")
            .replace("forms/", f"{BASE_PLAN.parent / 'forms'}/"))
    lines = ["elements:", "  - {id: start, type: startEvent, next: s0}"]
    for i in range(n):
        target = f"missing{i}" if broken else (f"s{i + 1}" if i + 1 < n else "end")
        lines.append(f"  - {{id: s{i}, type: serviceTask, stage: aggregation, handler: record, next: {target}}}")
    lines.append("  - {id: end, type: endEvent}")
    return text + "\n".join(lines) + "\n"


def test_a_definition_broken_everywhere_shows_its_first_problems_on_short_lines(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    path = tmp_path / "many.yaml"
    path.write_text(_chain(20_000, broken=True), encoding="utf-8")
    assert path.stat().st_size > 1024 * 1024
    said = refused(["validate", str(path)], cwd)
    lines = said.splitlines()
    assert len(lines) <= 60 and "more problem(s)" in lines[-1]
    assert max(len(x) for x in lines) < 1000
    assert "many.yaml:18: element 's0': 'missing0' is not an element" in lines[0]


def test_validation_time_grows_linearly_with_the_definition(tmp_path):
    def best(n: int) -> float:
        path = tmp_path / f"chain-{n}.yaml"
        path.write_text(_chain(n, broken=False), encoding="utf-8")
        times = []
        for _ in range(2):
            code, said, took = run(["validate", str(path)], tmp_path)
            assert code == 0, said
            times.append(took)
        return min(times)

    small, large = best(1_000), best(8_000)
    # linear: 8x the elements, ~8x the time (quadratic would be 64x); generous for a busy machine
    assert large < 20 * small + 0.5, (small, large)
    assert large < FEW_SECONDS


# --- the CLI as a user runs it ---------------------------------------------------------

def cli(args: list[str], cwd: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "planflow.flows.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **env})


def test_the_real_command_refuses_the_worst_files_without_a_traceback(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for args in (["validate", str(CORPUS / "definitions/alias-bomb.yaml")],
                 ["simulate", str(CORPUS / "definitions/timer-timezone-unknown.yaml"), "--out", "out"],
                 ["validate", str(_made(tmp_path, "binary.yaml", PNG))]):
        started = time.monotonic()
        done = cli(args, cwd)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith("error ") and len(done.stderr.splitlines()) == 1, done.stderr
        assert time.monotonic() - started < 15
    assert list(cwd.iterdir()) == []


# --- the store -------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_store_env(monkeypatch):
    monkeypatch.delenv("PLANFLOW_DATABASE_URL", raising=False)


def test_commands_that_read_create_no_store(tmp_path, no_store_env):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    as_of = ["--as-of", "2022-12-12T08:00:00+07:00"]
    for args, says in ((["status", "--db", "sqlite:///nonexistent/x.db"], "no store at 'sqlite:///nonexistent/x.db'"),
                       (["status"], "no store at 'sqlite:///out/planflow.db'"),
                       (["notifications"], "no store at 'sqlite:///out/planflow.db'"),
                       (["notifications", "--retry"], "no store at 'sqlite:///out/planflow.db'"),
                       (["sweep", *as_of], "no definition to sweep"),
                       (["sweep", *as_of, "--definition", str(BASE_PLAN)], "no store at 'sqlite:///out/planflow.db'")):
        said = refused(args, cwd)  # nothing written: no out/, no nonexistent/
        assert says in said and len(said.splitlines()) == 1, said


def test_the_real_status_creates_nothing_and_says_why(tmp_path, no_store_env):
    done = cli(["status", "--db", "sqlite:///nonexistent/x.db"], tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "no store at 'sqlite:///nonexistent/x.db'" in done.stderr
    assert list(tmp_path.iterdir()) == []


def _store_errors(tmp_path: Path) -> list[tuple[str, list[str]]]:
    closed = _free_port()
    (tmp_path / "folder.db").mkdir()
    return [
        ("mysql://planflow:s3cret-pw@127.0.0.1/plan",
         ["does not support 'mysql'", "SQLite", "PostgreSQL", "pip install 'planflow[postgres]'"]),
        (f"postgresql://planflow:s3cret-pw@127.0.0.1:{closed}/plan", [f"127.0.0.1:{closed}", "Connection refused"]),
        ("a store somewhere", ["not a database URL", "SQLite"]),
        (f"sqlite:///{tmp_path / 'folder.db'}", ["is a folder"]),
    ]


def test_a_wrong_store_is_one_message_with_the_password_masked(tmp_path, no_store_env):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for url, says in _store_errors(tmp_path):
        for args in (["status"], ["notifications"], ["sweep", "--as-of", "2022-12-12T08:00:00+07:00",
                                                     "--definition", str(BASE_PLAN)]):
            said = refused([*args, "--db", url], cwd)
            assert len(said.splitlines()) == 1, said
            assert all(words in said for words in says), (url, said)
            assert "s3cret-pw" not in said
            assert "***" in said or ":s3cret" not in url


def test_the_real_sweep_against_a_closed_port_says_it_once(tmp_path, no_store_env):
    url = f"postgresql://planflow:s3cret-pw@127.0.0.1:{_free_port()}/plan"
    done = cli(["sweep", "--as-of", "2022-12-12T08:00:00+07:00", "--definition", str(BASE_PLAN), "--db", url], tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.stderr.startswith("error cannot open the store 'postgresql://planflow:***@127.0.0.1:")
    assert len(done.stderr.splitlines()) == 1 and "s3cret-pw" not in done.stderr + done.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_never_answers_times_out(tmp_path, no_store_env, monkeypatch):
    """A socket on 127.0.0.1 that accepts connections and never says a word (closed by the test)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def accept():
        try:
            while True:
                held.append(server.accept()[0])
        except OSError:  # the test closed the socket
            pass

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("PLANFLOW_DATABASE_CONNECT_TIMEOUT", "2")
    url = f"postgresql://planflow:s3cret-pw@127.0.0.1:{server.getsockname()[1]}/plan"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    try:
        code, said, took = run(["status", "--db", url], cwd)
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert code == 1 and said.startswith("error cannot open the store 'postgresql://planflow:***@"), said
    assert "timeout" in said and "PLANFLOW_DATABASE_CONNECT_TIMEOUT" in said and "s3cret-pw" not in said
    assert took < 15, took


def test_a_store_of_an_older_planflow_is_refused_with_what_it_lacks(db_url, tmp_path, no_store_env):
    from planflow import StoreError, connect
    from planflow import store

    with pytest.raises(StoreError, match="no store at"):
        connect(db_url, create=False)  # an empty database, or no file: nothing is created
    if db_url.startswith("sqlite:///"):
        assert not Path(db_url.removeprefix("sqlite:///")).exists()
    connect(db_url)
    with connect(db_url).begin() as conn:  # what a store made before the paper-report columns looks like
        conn.exec_driver_sql("ALTER TABLE submissions DROP COLUMN document_number")
        conn.exec_driver_sql("ALTER TABLE submissions DROP COLUMN entered_by")
    store.dispose(db_url)
    for create in (False, True):
        with pytest.raises(StoreError) as info:
            connect(db_url, create=create)
        said = str(info.value)
        assert "older planflow" in said and "submissions.document_number" in said and "submissions.entered_by" in said
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    said = refused(["status", "--db", db_url], cwd)
    assert "older planflow" in said and "Traceback" not in said
