"""The units' portal under test: a started 2022 replay of the shipped plan, its portal app
(FastAPI's TestClient, no server) on a clock of the test's, and the store's counts (what a
refusal must leave as it was). Shared by tests/test_portal.py and tests/test_portal_review.py."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from planflow import Engine, connect
from planflow import store as s
from planflow.portal.app import create_app
from planflow.portal.links import Claim, sign_link
from planflow.simulation import EngineActions, first_start
from planflow.unit_links import generation

REPO = Path(__file__).resolve().parents[1]
PLAN = REPO / "definitions" / "hai-duong-dan-van-2022.yaml"
KEY = "hai-duong-dan-van-2022/2022"
SECRET = "kiểm-thử-bí-mật-của-cổng-thông-tin-0123456789"
COMMUNE = "ubnd-tp-hai-duong--phuong-cam-thuong"  # UBND phường Cẩm Thượng
NEIGHBOUR = "ubnd-tp-hai-duong--phuong-binh-han"
DISTRICT = "ubnd-thanh-pho-hai-duong"
TASK = "commune_self_evaluation"
PDF = b"%PDF-1.4\n% bao cao co chu ky\n%%EOF\n"


class Site:
    """A started 2022 instance, its portal, the portal's clock and the store's counts."""

    def __init__(self, plan, db_url: str, files: Path, definition: Path = PLAN, **options):
        self.plan, self.db = plan, connect(db_url)
        self.engine = Engine(plan, self.db)
        start = first_start(plan)
        self.root = self.engine.start(KEY, start, replay=True)
        EngineActions(self.engine, self.root).drain(start)
        self.now = dt.datetime(2022, 11, 20, 9, 30, 15, tzinfo=plan.calendar.tz)
        self.files = files
        self.app = create_app(definition, db_url, SECRET, files, clock=lambda: self.now, **options)
        self.client = TestClient(self.app)

    def link(self, unit: str = COMMUNE, element: str = TASK, gen: int | None = None) -> str:
        gen = generation(self.db, self.root, unit) if gen is None else gen
        return f"/u/{sign_link(SECRET, Claim(KEY, unit, element, gen))}"

    def counts(self) -> tuple:
        with self.db.connect() as conn:
            return (conn.scalar(select(func.count()).select_from(s.submissions)),
                    conn.scalar(select(func.count()).select_from(s.audit)),
                    tuple(conn.execute(select(s.work_items.c.status, func.count())
                                       .group_by(s.work_items.c.status).order_by(s.work_items.c.status)).all()),
                    sorted(p.name for p in self.files.glob("*")) if self.files.exists() else [],
                    conn.scalar(select(func.count()).select_from(s.outbox)))

    def form(self, path: str) -> dict:
        """The form's hidden CSRF value from the page (the cookie stays in the client)."""
        page = self.client.get(path)
        assert page.status_code == 200, page.text
        return {"csrf": re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)}

    def scores(self, **override) -> dict:
        form = self.plan.forms["self-evaluation"]
        typed = {f"score-{c}": str(i.max) for c, i in form.items.items() if not i.auto_from_workflow}
        return typed | {f"score-{c.replace('_', '.')}": v for c, v in override.items()}

    def post(self, path: str, data: dict, file=("bao-cao.pdf", PDF, "application/pdf")):
        return self.client.post(path, data=data, files={"file": file} if file else None)


def text_of(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text.split("<main>")[1]))
