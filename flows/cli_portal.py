"""``planflow portal``: the units' web portal (their personal links open it), run with uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from planflow.flows.cli_common import app, db_url, err, fail, out


@app.command()
def portal(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (put a TLS proxy in front for the Internet)"),
    port: int = typer.Option(8088, help="Port to listen on"),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the engine's store"),
    definition: Optional[Path] = typer.Option(
        None, help="The plan (a file) or a folder of plans the links name; default PLANFLOW_DEFINITION, "
                   "else the shipped plan"),
    files: Path = typer.Option(Path("out/portal-files"), help="Folder where the units' report files are kept"),
) -> None:
    """The page a unit opens from its personal link: its task, the criteria form, its receipt.

    Needs the signing secret of the links: PLANFLOW_PORTAL_SECRET (at least 32 characters)
    or the Prefect Secret block 'planflow-portal-secret'."""
    from planflow.flows.served_plans import configured_path
    from planflow.portal.links import portal_secret

    secret = portal_secret()
    if secret is None:
        err.print("[red]error[/red] no portal secret: set PLANFLOW_PORTAL_SECRET (at least 32 characters, e.g. "
                  "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`) or the Prefect Secret "
                  "block 'planflow-portal-secret'", highlight=False)
        raise typer.Exit(1)
    served = definition or configured_path()
    if not served.exists():
        fail(FileNotFoundError(f"{served}: no such definition file or folder"))
    url = db_url(db)
    try:
        application = build(served, url, secret, files)
    except (ValueError, LookupError) as exc:
        fail(exc)
    import uvicorn

    links = os.environ.get("PLANFLOW_PORTAL_URL") or "PLANFLOW_PORTAL_URL not set"
    out.print(f"planflow portal on http://{host}:{port} (links: {links})", highlight=False)
    # no access log: a unit's link (its token) is in the path of every request
    uvicorn.run(application, host=host, port=port, access_log=False, log_level="info", proxy_headers=True)


def build(definition: Path, url: str, secret: str, files: Path):
    from planflow import connect
    from planflow.flows.served_plans import plans_by_id
    from planflow.portal.app import create_app

    plans_by_id(definition)  # a folder without plans, or two plans with one id, is said now
    connect(url, create=False)
    return create_app(definition, url, secret, files)
