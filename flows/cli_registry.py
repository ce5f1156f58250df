"""``planflow registry``: a unit registry for a province and a day, from official lists.

``flows/cli.py`` adds it with ``cli_registry.register(app)``.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Optional

import typer

from planflow.flows.cli_common import err, fail, out, user_errors


def registry(
    province: str = typer.Option(..., "--province", help="official province code: 30 Hải Dương, 31 Hải Phòng …"),
    on: str = typer.Option(..., "--on", help="the day the units are in force, YYYY-MM-DD (e.g. 2026-01-01)"),
    departments: Optional[Path] = typer.Option(
        None, "--departments", help="YAML of the province's bodies and sở, ban, ngành (default: the shipped "
                                    "list of the period, planflow/data/departments/)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="registry file to write (default: stdout)"),
) -> None:
    """Build a unit registry from official lists: until 30/6/2025 the GSO list (districts and
    communes), from 1/7/2025 the 34 provinces and 3 321 communes of vietnam-provinces (no districts)."""
    from planflow.registry_build import RegistryBuildError, build_registry, checked_text

    try:
        day = dt.date.fromisoformat(on.strip())
    except ValueError:
        fail(ValueError(f"--on '{on}': ngày không hợp lệ, cần YYYY-MM-DD, ví dụ 2026-01-01 / not a date"))
    try:
        built = build_registry(province, day, departments)
        text = checked_text(built, str(output) if output else f"{built.id}.yaml")
    except (RegistryBuildError, *user_errors()) as exc:
        fail(exc)
    for warning in built.province.warnings:
        err.print(f"[yellow]cảnh báo[/yellow] {warning}", highlight=False, soft_wrap=True)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(OSError(f"{output}: không ghi được / cannot be written: {exc.strerror}"))
    _summary(built, output)


def _summary(built, output: Optional[Path]) -> None:
    pu = built.province
    count = {name: sum(1 for u in built.units if name in u["groups"]) for name in ("departments", "communes")}
    tiers = (f"{len(pu.districts)} UBND cấp huyện, {count['communes']} UBND cấp xã" if pu.districts
             else f"{count['communes']} UBND cấp xã trực thuộc {pu.word} (hai cấp, không có cấp huyện)")
    where = f"đã ghi {output}" if output else "registry"
    console = out if output else err
    console.print(f"[green]OK[/green] {where}: {pu.word} {pu.province.proper_name} ngày {built.day:%d/%m/%Y} — "
                  f"{count['departments']} sở, ban, ngành; {tiers}; {len(built.units)} đơn vị "
                  f"(nguồn: {pu.source})", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``planflow registry`` to ``app``."""
    app.command("registry")(registry)
