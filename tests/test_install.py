"""planflow installed as a user installs it: a built wheel, run from an empty folder.

The wheel is built from this checkout (``pip wheel``, not editable) and unpacked into a
folder that stands for site-packages; every command runs from an empty directory with
that folder first on the path, so nothing can be found through the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The unpacked wheel: what ``pip install /path/to/repo`` puts into site-packages."""
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy, so no build/ folder left by an earlier build can slip stale files in
    source = out / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "build", "dist", "out", "test-output", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
                   check=True, timeout=600, capture_output=True)
    wheel = next(out.glob("planflow-*.whl"))
    site = out / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    return site


def _run(site: Path, cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PLANFLOW_"))}
    env["PYTHONPATH"] = str(site)
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_wheel_holds_one_package_with_its_data(installed):
    top = {p.name for p in installed.iterdir()}
    assert {n for n in top if not n.endswith(".dist-info")} == {"planflow"}
    for data in ("definitions/hai-duong-dan-van-2022.yaml", "definitions/calendars/vn-civil-service.yaml",
                 "definitions/registries/hai-duong-2022.yaml", "definitions/forms/self-evaluation.yaml",
                 "definitions/scenarios/hai-duong-2022.yaml", "notifications/templates/dissemination.txt.j2",
                 "templates/aggregate-report.md.j2", "definitions/templates/report.docx",
                 "definitions/forms/report-revision.yaml", "data/gso-admin-units-2022-10-01.json",
                 "portal/templates/task.html.j2"):
        assert (installed / "planflow" / data).is_file(), data
    entry = (next(installed.glob("*.dist-info")) / "entry_points.txt").read_text(encoding="utf-8")
    assert "planflow = planflow.flows.cli:app" in entry


def test_only_planflow_is_importable_from_an_empty_folder(installed, tmp_path):
    done = _run(installed, tmp_path, "-c", "import planflow.flows.cli, planflow.notifications; print(planflow.__file__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(installed)), done.stdout
    for name in ("engine", "flows", "notifications"):
        done = _run(installed, tmp_path, "-c", f"import {name}")
        assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr, name


def test_a_users_own_plan_elsewhere_validates_and_simulates(installed, tmp_path):
    """A plan in the user's own folder, naming the shipped calendar by its name."""
    plans = tmp_path / "plans"
    for rel in ("hai-duong-dan-van-2022.yaml", "registries/hai-duong-2022.yaml", "forms/self-evaluation.yaml",
                "forms/review-decision.yaml", "forms/report-revision.yaml", "scenarios/hai-duong-2022.yaml"):
        (plans / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "definitions" / rel, plans / rel)
    assert not (plans / "calendars").exists()
    empty = tmp_path / "empty"
    empty.mkdir()

    shipped = _run(installed, empty, "-m", "planflow.flows.cli", "validate",
                   str(installed / "planflow" / "definitions" / "hai-duong-dan-van-2022.yaml"))
    assert shipped.returncode == 0 and "OK" in shipped.stdout, shipped.stderr
    done = _run(installed, empty, "-m", "planflow.flows.cli", "validate", str(plans / "hai-duong-dan-van-2022.yaml"))
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr

    out = tmp_path / "out"
    done = _run(installed, empty, "-m", "planflow.flows.cli", "simulate", str(plans / "hai-duong-dan-van-2022.yaml"),
                "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "completed" and len(summary["units"]) == 265
    assert (out / "prefect-home").is_dir()  # Prefect ran from a home of its own under --out
    assert list(empty.iterdir()) == []  # nothing written where the command was run
