"""`medins policy check`: the days and regions without a policy in force, and what is in force."""
from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console

from shared import clock
from shared.identity import REGIONS
from shared.policy import PolicyBook, PolicyError
from shared.policy.reference import Reference
from shared.settings import PlatformSettings

console = Console(soft_wrap=True)
policy_cli = typer.Typer(help="The policy book: versions and measures in force, and gaps.",
                         no_args_is_help=True)


def _regions(option: str) -> list[str]:
    chosen = [r.strip() for r in option.split(",") if r.strip()] if option else sorted(REGIONS)
    unknown = [r for r in chosen if r not in REGIONS]
    if unknown:
        raise typer.BadParameter(f"unknown region(s) {unknown}; served: {sorted(REGIONS)}")
    return chosen


@policy_cli.command("check")
def policy_check(
        regions: Annotated[str, typer.Option(help="comma-separated region codes (default: "
                                                  "every served region)")] = "",
        days_back: Annotated[int, typer.Option(help="window start, days before today (claims "
                                                    "reach back a year)")] = 365,
        days_ahead: Annotated[int, typer.Option(help="window end, days after today")] = 60,
        start: Annotated[str, typer.Option("--from", help="window start YYYY-MM-DD")] = "",
        end: Annotated[str, typer.Option("--to", help="window end YYYY-MM-DD")] = "",
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List, per region, the days without a policy version in force in the window (exit 1 if
    any), the days of policy left from today and the temporary measures in force today.
    Reads the folders the workers read (MEDINS_POLICY_DIR, MEDINS_POLICY_DIRS)."""
    settings = PlatformSettings()
    today = clock.china_today()
    first = date.fromisoformat(start) if start else today - timedelta(days=days_back)
    last = date.fromisoformat(end) if end else today + timedelta(days=days_ahead)
    if last < first:
        raise typer.BadParameter("--to is before --from")
    folders = settings.policy_folders()
    # The reference data (institutions, postal addresses) is read with the book by every
    # worker; a wrong file stops them at start, so the check says so first.
    try:
        reference: Reference | None = Reference.load(folders)
        reference_error = ""
    except PolicyError as exc:
        reference, reference_error = None, str(exc)
    report: list[dict[str, Any]] = []
    for region in _regions(regions):
        try:
            book = PolicyBook.load(region, folders)
        except PolicyError as exc:
            report.append({"region": region, "error": str(exc), "gaps": [[first.isoformat(),
                                                                          last.isoformat()]]})
            continue
        report.append({
            "region": region,
            "institutions": sum(i.region == region for i in reference.institutions.values())
            if reference else 0,
            "postal_address": region in reference.agencies if reference else False,
            "versions": [[v.version, v.effective_from.isoformat(), v.effective_to.isoformat()]
                         for v in book.versions],
            "gaps": [[a.isoformat(), b.isoformat()] for a, b in book.gaps(first, last)],
            "days_left": book.days_left(today),
            "temporary_measures_today": [[m.id, m.kind, m.ends.isoformat(), m.notice]
                                         for m in book.measures_on(today) if not m.standing],
        })
    failed = any(r["gaps"] for r in report) or bool(reference_error)
    if as_json:
        typer.echo(json.dumps({"today": today.isoformat(), "from": first.isoformat(),
                               "to": last.isoformat(), "reference_error": reference_error,
                               "folders": [str(f) for f in folders], "regions": report},
                              ensure_ascii=False))
        raise typer.Exit(1 if failed else 0)
    console.print(f"policy folders: {', '.join(str(f) for f in folders)}")
    console.print(f"window {first} .. {last} (today {today})")
    if reference_error:
        console.print(f"[red]reference data cannot be read (workers will not start): "
                      f"{reference_error}[/]")
    for r in report:
        if "error" in r:
            console.print(f"[red]{r['region']}: cannot read the policy files: {r['error']}[/]")
            continue
        versions = ", ".join(f"{v} ({a}..{b})" for v, a, b in r["versions"]) or "none"
        console.print(f"[bold]{r['region']}[/]: versions {versions}; "
                      f"{r['days_left']} day(s) of policy left from today; "
                      f"{r['institutions']} institution(s) named; postal address "
                      f"{'given' if r['postal_address'] else '[red]missing[/]'}")
        for a, b in r["gaps"]:
            console.print(f"  [red]no policy in force {a} .. {b}[/]")
        for mid, kind, ends, notice in r["temporary_measures_today"]:
            console.print(f"  temporary measure in force: {mid} ({kind}, until {ends}; "
                          f"{notice})")
    if failed:
        console.print("[red]gaps found: claims and decisions dated in them wait until a "
                      "version is added[/]")
    raise typer.Exit(1 if failed else 0)
