"""``planflow bpmn export`` and ``planflow bpmn import``: a plan as BPMN 2.0 XML, and back.

The export writes what modelers (bpmn.io, Camunda Modeler) open: a pool per process, lanes
for the bodies that act, the diagram laid out, the rest of the plan in planflow extension
elements; it is checked against the OMG schema before it is written. The import reads a
BPMN file within the subset planflow runs and writes the definition only once ``load_plan``
accepts it; every problem is reported at once (line, column, id, name) and nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from planflow.flows.cli_common import app, fail, out, user_errors

bpmn = typer.Typer(add_completion=False, no_args_is_help=True,
                   help="Quy trình dạng BPMN 2.0 XML (export a plan for BPMN modelers, import one drawn in them).")
app.add_typer(bpmn, name="bpmn")


@bpmn.command("export")
def export(plan: Path = typer.Argument(..., help="process definition (YAML)"),
           output: Optional[Path] = typer.Option(None, "-o", "--output",
                                                 help="the BPMN file to write (default: out/<plan id>.bpmn)"),
           year: Optional[int] = typer.Option(None, "--year", help="the year of a plan written for every year "
                                              "(default: this year); a plan of a fixed year is that year's")) -> None:
    """Write a plan as BPMN 2.0 XML, validated against the OMG schema, with its diagram."""
    from planflow import load_plan
    from planflow.bpmn.export import SchemaProblem, export_bpmn

    try:
        loaded = load_plan(plan, year)
        data = export_bpmn(loaded)
    except (*user_errors(), SchemaProblem) as exc:  # SchemaProblem: an id XML does not take (starts with a digit)
        fail(exc)
    target = output or Path("out") / f"{loaded.id}.bpmn"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:  # a folder, a read-only place
        fail(OSError(f"cannot write {target}: {exc.strerror}"))
    count = len(loaded.definition.subprocesses) + 1
    out.print(f"[green]OK[/green] {target}: {count} process(es), BPMN 2.0 (checked against the OMG schema)",
              highlight=False)


@bpmn.command("import")
def import_(file: Path = typer.Argument(..., help="BPMN 2.0 XML file (.bpmn)"),
            output: Optional[Path] = typer.Option(
                None, "-o", "--output",
                help="the definition to write (YAML). The registry, forms, calendar and templates it names are "
                     "found relative to it, as for any definition: write it in the folder that holds them "
                     "(e.g. definitions/). Default: <process id>.yaml beside the BPMN file"),
            force: bool = typer.Option(False, "--force", help="replace the output file if it exists")) -> None:
    """Read a BPMN file drawn in a modeler (or exported by planflow) into a definition that
    `planflow validate` accepts; refuse, naming every problem, and write nothing otherwise."""
    from planflow.bpmn.importer import import_bpmn, parse_bpmn, read_bpmn

    try:
        bpmn = parse_bpmn(file)  # read, parsed and checked once, for the id and for the import
        target = output or file.parent / f"{read_bpmn(bpmn)['id']}.yaml"
        if target.exists() and not force:
            fail(FileExistsError(f"{target} exists: choose another -o, or --force to replace it"))
        written = import_bpmn(bpmn, target)
    except user_errors() as exc:
        fail(exc)
    except OSError as exc:  # a folder given as the file, a place it cannot read or write
        fail(OSError(f"{exc.filename or file}: {exc.strerror}"))
    out.print(f"[green]OK[/green] {written}: definition from {file} (accepted by planflow validate)", highlight=False)
