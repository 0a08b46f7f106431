"""`medins calendar check`: the years of holiday schedule known, its last day, and days left."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shared import clock
from shared.workdays import WARN_DAYS, ScheduleFileError, WorkingCalendar

console = Console(soft_wrap=True)
calendar_cli = typer.Typer(help="Holiday schedules (statutory days off, make-up working days).",
                           no_args_is_help=True)


@calendar_cli.command("check")
def calendar_check(
        min_days: Annotated[int, typer.Option(help="exit 1 when fewer days of schedule are "
                                                   "left")] = WARN_DAYS,
        folder: Annotated[list[Path] | None, typer.Option(
            "--dir", help="extra schedule folder (besides MEDINS_CALENDAR_DIR and the "
                          "bundled one)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Validate every schedule file; print the years covered, the last day with data and the
    days left. Exit 1 under --min-days (due dates past the data are provisional), 2 if a file
    is invalid."""
    try:
        calendar = WorkingCalendar(folder or [])
    except (ScheduleFileError, OSError) as err:
        console.print(f"[red]invalid schedule file[/red]: {err}", highlight=False)
        raise typer.Exit(2) from None
    today = clock.china_today()
    coverage = calendar.coverage(today)
    files = [str(p) for d in calendar.folders if d.is_dir() for p in sorted(d.glob("*.toml"))]
    short = coverage.days_left < min_days
    if as_json:
        print(json.dumps({"today": today.isoformat(), "years": list(coverage.years),
                          "last_day": coverage.last_day.isoformat(),
                          "days_left": coverage.days_left, "min_days": min_days,
                          "files": files, "ok": not short}, ensure_ascii=False))
    else:
        years = coverage.years
        console.print(f"years covered: {years[0]}-{years[-1]}"
                      + (f" (files: {', '.join(files)})" if files else ""), highlight=False)
        console.print(f"last day with a holiday schedule: {coverage.last_day}", highlight=False)
        console.print(f"days left from {today}: {coverage.days_left}", highlight=False)
        if short:
            nxt = coverage.last_day.year + 1
            console.print(
                f"[yellow]fewer than {min_days} days left[/yellow]: add the State Council's "
                f"{nxt} schedule as {nxt}.toml (shared/calendar/README.md); until then due "
                "dates past it are provisional", highlight=False)
    if short:
        raise typer.Exit(1)
