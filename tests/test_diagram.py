"""The process as a picture (issue 14): ``planflow diagram`` and where a plan stands, drawn.

The shipped plans are drawn as an official reads them: every element's and lane's name
in the SVG, well-formed, names inside their boxes; a PNG big enough for A4 landscape. A plan
instance run on the engine alone (no Prefect) to a known moment is coloured as it stands,
with the counts its summary gives; its Prefect artifact is read back through the client.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import re

import pytest
from lxml import etree
from PIL import Image
from typer.testing import CliRunner

from planflow import Engine, Submission, connect, load_plan
from planflow.bpmn.diagram import A4_LANDSCAPE_MM, diagram_svg, svg_to_png
from planflow.bpmn.diagram_text import font_file, text_width
from planflow.bpmn.layout import layout
from planflow.bpmn.plan_state import ACTIVE, DONE, NOT_REACHED, OVERDUE, STALLED, plan_state
from planflow.flows import cli_diagram  # noqa: F401 - registers `planflow diagram`
from planflow.flows.cli_common import app
from planflow.summary import build_summary
from tests.conftest import PLAN, REPO
from tests.test_engine import drain, full_scores

SVG = "{http://www.w3.org/2000/svg}"
PLANS = [PLAN, REPO / "definitions" / "hai-phong-dan-van-2026.yaml"]
KEY = "hai-duong-dan-van-2022/2022"
A4_DPI = 200  # a PNG printed sharp across A4 landscape


def texts(root) -> list[str]:
    """Each <text> of the SVG as one line of words (its wrapped lines joined)."""
    return [" ".join(" ".join(t.itertext()).split()) for t in root.iter(f"{SVG}text")]


def shape(root, process: str, element: str):
    found = root.find(f".//{SVG}g[@id='{process}.{element}']")
    assert found is not None, f"no shape for {process}.{element}"
    return found


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.stem)
def test_the_shipped_plan_is_drawn_with_every_name_and_lane(path):
    plan = load_plan(path)
    root = etree.fromstring(diagram_svg(layout(plan)).encode())  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg"
    words = texts(root)
    processes = [plan.definition.main, *plan.definition.subprocesses]
    for process in processes:
        assert process.name in words  # each drawing is headed by its process
        for e in process.elements:
            shape(root, process.id, e.id)
            if e.name:
                assert e.name in words, f"{e.id}: '{e.name}' is not written in the picture"
    # the bodies that act, by the names officials use
    lanes = {"Sở Nội vụ", "Sở, ban, ngành", "UBND cấp xã"}
    assert lanes <= set(words)
    assert any(w.startswith("Ban ") and "Dân vận" in w for w in words)


def test_names_are_wrapped_inside_their_boxes():
    plan = load_plan(PLAN)
    procs = layout(plan)
    root = etree.fromstring(diagram_svg(procs).encode())
    for proc in procs:
        for node in proc.nodes.values():
            if node.kind.endswith("Task") or node.kind == "callActivity":
                text = shape(root, proc.process_id, node.id).find(f"{SVG}text")
                size = float(text.get("font-size"))
                lines = [t.text for t in text.iter(f"{SVG}tspan")]
                assert " ".join(lines) == node.name
                assert size >= 9
                assert all(text_width(line, size) <= node.box.width - 8 for line in lines), node.id
                assert len(lines) * size * 1.2 <= node.box.height


def _freetype_width(text: str, size: float, bold: bool) -> float:
    """The unhinted width FreeType lays ``text`` out with: advances plus the pairs' kerning."""
    from matplotlib.ft2font import FT2Font, Kerning, LoadFlags

    face = FT2Font(str(font_file(bold)))
    face.set_size(size, 72)
    width, before = 0.0, None
    for char in text:
        index = face.get_char_index(ord(char))
        width += face.load_glyph(index, flags=LoadFlags.NO_HINTING).linearHoriAdvance / 65536  # 0: .notdef
        if before is not None:
            width += face.get_kerning(before, index, Kerning.UNFITTED) / 64
        before = index
    return width


def test_text_is_measured_as_freetype_lays_it_out():
    """The widths that decide where a name wraps are the font's own, read from its tables: the
    same as FreeType's for every name of the plan (Vietnamese diacritics, kerned pairs)."""
    plan = load_plan(PLAN)
    names = {e.name for p in [plan.definition.main, *plan.definition.subprocesses] for e in p.elements if e.name}
    names |= {u.name for u in plan.registry.units} | {"AV To Wa Yo", "Tự đánh giá, chấm điểm: ở ự ỉ ữ Ặ", "Hà Nội 河内"}  # the last: glyphs it lacks
    for name in sorted(names):
        for bold in (False, True):
            assert text_width(name, 64, bold) == pytest.approx(_freetype_width(name, 64, bold), abs=1e-6), name


def test_the_png_is_sharp_across_a4_landscape(tmp_path):
    plan = load_plan(PLAN)
    svg = diagram_svg(layout(plan))
    image = Image.open(io.BytesIO(svg_to_png(svg)))
    width, height = image.size
    assert width >= A4_LANDSCAPE_MM / 25.4 * A4_DPI - 1
    root = etree.fromstring(svg.encode())
    assert height == pytest.approx(width * float(root.get("height")) / float(root.get("width")), abs=2)
    # something is drawn: not a blank page
    assert len(image.convert("L").getcolors(maxcolors=1 << 16) or []) > 10


def test_the_cli_writes_svg_and_png_and_refuses_other_files(tmp_path):
    runner = CliRunner()
    for name in ("plan.svg", "plan.png"):
        done = runner.invoke(app, ["diagram", str(PLAN), "-o", str(tmp_path / name)])
        assert done.exit_code == 0, done.output
    etree.parse(str(tmp_path / "plan.svg"))
    assert (tmp_path / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = runner.invoke(app, ["diagram", str(PLAN), "-o", str(tmp_path / "plan.pdf")])
    assert done.exit_code == 1 and "plan.pdf" in done.output and ".svg or .png" in done.output
    assert not (tmp_path / "plan.pdf").exists()
    done = runner.invoke(app, ["diagram", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "x.svg")])
    assert done.exit_code == 1 and "missing.yaml" in done.output and isinstance(done.exception, SystemExit)
    assert not (tmp_path / "x.svg").exists()


# --- where a plan stands -------------------------------------------------------------------


@pytest.fixture(scope="module")
def moment(tmp_path_factory):
    """Hải Dương 2022 on 5/12 at 09:00: 11 of 18 departments and the first 150 of 235 communes
    reported on 20/11; the communes' due date (2/12) passed; one incident on a district's
    aggregation of its communes."""
    plan = load_plan(PLAN)
    url = f"sqlite:///{tmp_path_factory.mktemp('diagram') / 'planflow.db'}"
    engine = Engine(plan, connect(url))
    tz = plan.calendar.tz
    start, sent, now = (dt.datetime(2022, 3, 15, 8, tzinfo=tz), dt.datetime(2022, 11, 20, 10, tzinfo=tz),
                        dt.datetime(2022, 12, 5, 9, tzinfo=tz))
    root = engine.start(KEY, start)
    drain(engine, start)
    departments = [u.code for u in plan.registry.group("departments")]
    communes = [u.code for u in plan.registry.group("communes")]
    engine.submit([Submission(c, sent, {"scores": full_scores(plan)}, "department_self_evaluation")
                   for c in departments[:11]] +
                  [Submission(c, sent, {"scores": full_scores(plan)}, "commune_self_evaluation")
                   for c in communes[:150]], sent, root_id=root)
    drain(engine, sent)
    engine.sweep(now, root_id=root)
    drain(engine, now)
    engine.record_incident(root, flow_run="test", state="Failed", message="lỗi thử", step="aggregate_communes",
                           as_of=now)
    return engine, root, now, len(departments), len(communes), url


def test_the_state_marks_done_active_overdue_and_stalled_with_the_summarys_counts(moment):
    engine, root, now, n_departments, n_communes, _ = moment
    state = plan_state(engine, root, now)
    main, district = engine.plan.id, "district-cycle"
    units = build_summary(engine, root, as_of=now)["units"]
    reported = {el: sum(1 for u in units.values() if u["element"] == el and u["status"] in ("on_time", "late"))
                for el in ("department_self_evaluation", "commune_self_evaluation")}
    assert reported == {"department_self_evaluation": 11, "commune_self_evaluation": 150}

    departments = state.of(main, "department_self_evaluation")
    assert departments.status == ACTIVE  # due 9/12: nobody late yet
    assert departments.badges() == [f"11/{n_departments} đã báo cáo"]
    communes = state.of(district, "commune_self_evaluation")
    assert communes.status == OVERDUE  # due 2/12
    assert communes.badges() == [f"150/{n_communes} đã báo cáo", f"{n_communes - 150} quá hạn"]
    assert state.of(district, "aggregate_communes").status == STALLED
    for process, element in [(main, "start"), (main, "disseminate"), (district, "district_plan"),
                             (district, "direct_communes")]:
        assert state.of(process, element).status == DONE, element
    for element in ("aggregate", "review", "publish", "end"):
        assert state.of(main, element).status == NOT_REACHED, element
    assert (state.reported, state.expected) == (161, n_departments + n_communes + 12)


def test_the_state_is_drawn_in_colours_with_counts_and_a_vietnamese_legend(moment):
    engine, root, now, _, n_communes, _ = moment
    state = plan_state(engine, root, now)
    root_el = etree.fromstring(diagram_svg(layout(engine.plan), state).encode())
    words = texts(root_el)
    assert "Tình hình lúc 05/12/2022 09:00: 161/265 đơn vị đã báo cáo" in words
    assert {"Đã xong", "Đang thực hiện", "Có đơn vị quá hạn", "Chưa đến"} <= set(words)
    assert f"150/{n_communes} đã báo cáo {n_communes - 150} quá hạn" in words
    strokes = {}
    for element, status in [("commune_self_evaluation", OVERDUE), ("district_plan", DONE),
                            ("aggregate_communes", STALLED)]:
        g = shape(root_el, "district-cycle", element)
        assert status in g.get("class").split()
        strokes[status] = g.find(f"{SVG}rect").get("stroke")
    strokes[NOT_REACHED] = shape(root_el, engine.plan.id, "publish").find(f"{SVG}rect").get("stroke")
    assert len(set(strokes.values())) == 4  # each state its own colour


def test_the_cli_draws_where_the_instance_stands(moment, tmp_path):
    _, _, _, _, n_communes, url = moment
    runner = CliRunner()
    done = runner.invoke(app, ["diagram", str(PLAN), "--db", url, "-o", str(tmp_path / "now.svg")])
    assert done.exit_code == 0, done.output
    assert f"150/{n_communes} đã báo cáo {n_communes - 150} quá hạn" in texts(etree.parse(str(tmp_path / "now.svg")))
    done = runner.invoke(app, ["diagram", str(PLAN), "--db", url, "--instance", "khac/2022", "-o",
                               str(tmp_path / "other.svg")])
    assert done.exit_code == 1 and "khac/2022" in done.output
    assert not (tmp_path / "other.svg").exists()


def test_the_artifact_carries_the_drawn_state(moment, prefect_harness):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from planflow.flows.artifacts import artifact_key
    from planflow.flows.diagram_artifact import WHAT, publish_diagram

    engine, root, now, _, n_communes, _ = moment

    @flow(name="publish-diagram-test")
    async def publish() -> str:  # as the flows publish it: in a flow run
        return await publish_diagram(engine, root, KEY, artifact_key(KEY, WHAT), now)

    asyncio.run(publish())

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["hai-duong-dan-van-2022-2022-diagram"])))

    (artifact,) = asyncio.run(read())
    assert artifact.type == "markdown" and "05/12/2022 09:00" in artifact.description
    images = re.findall(r"!\[[^\]]*\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", artifact.data)
    assert images, "no SVG image in the artifact"
    drawn = etree.fromstring(base64.b64decode(images[0]))
    assert f"150/{n_communes} đã báo cáo {n_communes - 150} quá hạn" in texts(drawn)
    # then the same picture in pieces the panel shows at full size, left to right, covering it all
    width = float(drawn.get("width"))
    windows = [[float(v) for v in etree.fromstring(base64.b64decode(i)).get("viewBox").split()] for i in images[1:]]
    assert len(windows) >= 2 and all(w[2] < width / 1.5 for w in windows)
    assert windows[0][0] == 0 and windows[-1][0] + windows[-1][2] == pytest.approx(width)
    assert all(a[0] + a[2] > b[0] for a, b in zip(windows, windows[1:]))  # no gap between pieces
    assert "UBND cấp xã tự đánh giá, báo cáo UBND cấp huyện" in artifact.data  # the state in words too


def test_the_readme_shows_the_shipped_plan_as_it_is_drawn_now():
    """The README's picture is the shipped plan's diagram as `planflow diagram` draws it today
    (documentation kept true: redraw with `planflow diagram definitions/hai-duong-dan-van-2022.yaml
    -o docs/diagram-hai-duong-dan-van-2022.svg` when the plan or the drawing changes)."""
    shown = REPO / "docs" / "diagram-hai-duong-dan-van-2022.svg"
    assert f"]({shown.relative_to(REPO)})" in (REPO / "README.md").read_text(encoding="utf-8")
    assert shown.read_text(encoding="utf-8") == diagram_svg(layout(load_plan(PLAN)))


def test_the_state_from_the_artifacts_progress_is_the_state_read_alone(moment):
    """Published with the other artifacts, the state is drawn from their progress (the summary
    is not built twice): it must be the same state."""
    from planflow.progress import instance_progress

    engine, root, now, *_ = moment
    assert plan_state(engine, root, now, instance_progress(engine, root, now)) == plan_state(engine, root, now)


def test_a_plan_of_every_year_is_drawn_at_the_year_links_act_on(tmp_path):
    """With --db, `planflow diagram` of a plan of every year draws the instance `planflow links`
    acts on (the newest running year), not this calendar year's."""
    import shutil

    from planflow.flows.cli_links import _target
    from planflow.plan_versions import plan_for
    from planflow.simulation import first_start

    folder = tmp_path / "a" / "b" / "c"
    shutil.copytree(REPO / "tests" / "fixtures" / "every-year", folder)
    shutil.copytree(REPO / "definitions" / "forms", tmp_path / "definitions" / "forms")
    path, url = folder / "plan.yaml", f"sqlite:///{tmp_path / 'planflow.db'}"
    db = connect(url)
    for year in (2022, 2023):  # both running; 2023 the newest
        key = f"thu-nghiem-moi-nam/{year}"
        plan = plan_for(db, key, path)
        Engine(plan, db).start(key, first_start(plan), replay=True)
    assert _target(path, None, url, None)[0].root_key == "thu-nghiem-moi-nam/2023"
    done = CliRunner().invoke(app, ["diagram", str(path), "--db", url, "-o", str(tmp_path / "now.svg")])
    assert done.exit_code == 0, done.output
    words = texts(etree.parse(str(tmp_path / "now.svg")))
    assert any(w.startswith("Tình hình lúc ") and "/2023 " in w for w in words), words
    assert any("năm 2023" in w for w in words) and not any(f"năm {dt.date.today().year}" in w for w in words)
