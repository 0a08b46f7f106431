"""The `medins` command: run the platform, its workers, and talk to it like a partner would."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shared.settings import SERVICES, PlatformSettings

# Two partner regions by default: a transfer (the reason regions exist) can be seen at once.
DEFAULT_REGIONS = "210200,370100"

cli = typer.Typer(help="Regional medical-insurance platform (不见面办理).", no_args_is_help=True,
                  add_completion=False)
console = Console(soft_wrap=True)


def _stack_env() -> None:
    """Point the command at a stack `medins up` started here, if the dev stack is installed
    (it is an extra: a production image has only the environment's settings)."""
    try:
        from shared.devstack.supervisor import load_stack_defaults
    except ImportError:
        return
    load_stack_defaults()


def prepare_regions(regions: list[str]) -> None:
    """Declare topics and migrate every service schema of each region."""
    from shared.db.migrations import migrate, service_migrations
    from shared.db.pool import connect
    from shared.messaging.admin import TopicPolicy, ensure_topics, region_topics

    async def run() -> None:
        settings = PlatformSettings()
        names = [t for r in regions for t in region_topics(r, settings.namespace)]
        await ensure_topics(settings.broker_url, names, settings.topic_partitions,
                            policy=TopicPolicy.from_settings(settings))
        conn = await connect(settings.database_url)
        try:
            for region in regions:
                for service in SERVICES:
                    applied = await migrate(conn, settings.schema_for(service, region),
                                            service_migrations(service))
                    if applied:
                        console.print(f"migrated {service}@{region}: {', '.join(applied)}")
        finally:
            await conn.close()

    asyncio.run(run())


@cli.command()
def up(regions: Annotated[str, typer.Option(help="comma-separated region codes")] = DEFAULT_REGIONS
       ) -> None:
    """Start broker, database, mail server and all four services; Ctrl-C stops everything."""
    from shared.devstack.supervisor import run_up
    from shared.identity import REGIONS

    chosen = [r.strip() for r in regions.split(",") if r.strip()]
    unknown = [r for r in chosen if r not in REGIONS]
    if unknown:
        raise typer.BadParameter(f"unknown region(s) {unknown}; served: {list(REGIONS)}")
    raise typer.Exit(run_up(chosen))


@cli.command()
def worker(service: Annotated[str, typer.Argument(help="|".join(SERVICES))]) -> None:
    """Run one service's worker (as a container would)."""
    from shared.messaging.runtime import run_worker
    from shared.services import load_spec, settings_for

    if service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service}; one of {', '.join(SERVICES)}")
    run_worker(load_spec(service), settings_for(service))


@cli.command()
def migrate(regions: Annotated[str, typer.Option(help="comma-separated region codes")] = ""
            ) -> None:
    """Create topics and apply every service's migrations for the configured region(s)."""
    _stack_env()
    prepare_regions([r for r in (regions or PlatformSettings().region).split(",") if r])


@cli.command()
def schemas(folder: Annotated[Path, typer.Argument()] = Path("schemas-out")) -> None:
    """Write the JSON Schema of every event type to a folder."""
    from shared.contracts import write_json_schemas

    written = write_json_schemas(folder)
    console.print(f"wrote {len(written)} schemas to {folder}")


@cli.command()
def publish(topic: str, file: Path,
            key: Annotated[Path | None, typer.Option(
                "--key", help="private key file (`<keyring>/<producer>/<key id>.key`) to sign "
                              "with; default: the keyring's key of the producer allowed for "
                              "each event type")] = None) -> None:
    """Validate events in a JSON file (one envelope or a list), sign and publish them."""
    from shared.messaging.publisher import Signer, resolve_topic, validate_documents
    from shared.messaging.publisher import publish as send
    from shared.trust import load_private_key

    _stack_env()
    settings = PlatformSettings()
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        console.print(f"[red]cannot read {file}: {exc}[/]")
        raise typer.Exit(2) from None
    docs = doc if isinstance(doc, list) else [doc]
    envelopes, errors = validate_documents(docs, settings.region, "/medins/cli")
    if errors:
        for error in errors:
            console.print(f"[red]{error}[/]")
        raise typer.Exit(1)
    physical = resolve_topic(topic, settings.region, settings.namespace)
    try:
        signing = load_private_key(key) if key is not None else None
    except (OSError, ValueError) as exc:
        console.print(f"[red]cannot use key {key}: {exc}[/]")
        raise typer.Exit(2) from None
    asyncio.run(send(settings.broker_url, physical, envelopes,
                     signer=Signer.from_settings(settings, signing)))
    console.print(f"published {len(envelopes)} event(s) to {physical}")


@cli.command()
def status(ref: Annotated[str, typer.Argument(
               help="resident ID, application/claim/transfer id, or a letter's tracking number")],
           region: Annotated[str, typer.Option(help="region to ask (default MEDINS_REGION)")] = "",
           as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")]
           = False) -> None:
    """Show a person's or an application's state and history in every service (masked)."""
    from shared.status import collect_status

    _stack_env()
    settings = PlatformSettings(**({"region": region} if region else {}))
    found = asyncio.run(collect_status(settings, ref))
    if not found:
        typer.echo(f"nothing known about {ref}", err=True)
        raise typer.Exit(1)
    from shared.messaging.runtime import jsonable_dump

    if as_json:
        typer.echo(jsonable_dump(found))
        return

    for service, body in found.items():
        console.rule(f"{service} ({settings.region})")
        console.print(jsonable_dump(body), highlight=False)


@cli.command()
def progress(person_id: Annotated[str, typer.Argument(help="resident ID (居民身份证号)")],
             staff: Annotated[bool, typer.Option("--staff", help="add codes for staff")] = False,
             region: Annotated[str, typer.Option(help="region to ask (default MEDINS_REGION)")]
             = "",
             as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")]
             = False) -> None:
    """我的申办业务: every application, case, filing, claim, transfer and refused request."""
    from shared.progress import person_view, progress_of, render_text, staff_view

    _stack_env()
    settings = PlatformSettings(**({"region": region} if region else {}))
    items = asyncio.run(progress_of(settings, person_id))
    view = (staff_view if staff else person_view)(person_id, items)
    if as_json:
        typer.echo(json.dumps(view, ensure_ascii=False, indent=2))
    else:
        typer.echo(render_text(view))
    if not items:
        raise typer.Exit(1)


@cli.command()
def demo(region: Annotated[str, typer.Option()] = "",
         proactive: Annotated[int, typer.Option(help="records in the outage batch")] = 1000
         ) -> None:
    """Feed realistic stories into a running platform and show their progress."""
    from shared.devstack.demo import run_demo
    from shared.devstack.supervisor import running_regions

    _stack_env()
    settings = PlatformSettings(**({"region": region} if region else {}))
    partners = [r for r in running_regions() if r != settings.region]
    raise typer.Exit(asyncio.run(run_demo(settings, console, proactive,
                                          partners[0] if partners else None)))


@cli.command()
def mail() -> None:
    """List the messages the local SMTP server and SMSC received."""
    from shared.devstack.mailserver import read_mailbox
    from shared.devstack.supervisor import STATE_DIR
    from shared.observability.masking import mask_text

    for m in read_mailbox(STATE_DIR / "mail"):
        console.print(f"[bold]email[/] to {mask_text(','.join(m.recipients))}: {m.subject}")
        console.print(m.body, highlight=False)
    from shared.devstack.smsc import read_received

    for sms in read_received(STATE_DIR / "sms"):
        console.print(f"[bold]sms[/] to {mask_text(sms['to'])} ({sms['parts']} part(s), UCS-2):"
                      f" {sms['text']}", highlight=False)


notify_cli = typer.Typer(help="Operator commands for notifications.", no_args_is_help=True)
cli.add_typer(notify_cli, name="notify")


async def _notify_conn():  # type: ignore[no-untyped-def]
    from shared.db.pool import connect

    settings = PlatformSettings()
    return await connect(settings.database_url, settings.schema_for("notify"))


@notify_cli.command("parked")
def notify_parked(as_json: Annotated[bool, typer.Option("--json", help="machine-readable")]
                  = False) -> None:
    """List messages that are parked or whose outcome is unknown (masked)."""
    from services.notify import repository as repo
    from shared.observability.masking import mask_text

    _stack_env()

    async def run() -> list[dict[str, object]]:
        conn = await _notify_conn()
        try:
            return [dict(r) for r in await repo.needing_attention(conn)]
        finally:
            await conn.close()

    rows = asyncio.run(run())
    if as_json:
        from shared.messaging.runtime import masked_status

        typer.echo(json.dumps(masked_status({"messages": rows})["messages"], default=str,
                              ensure_ascii=False))
        return
    for r in rows:
        console.print(f"#{r['id']} {r['status']:>7} {r['channel']:>5} → "
                      f"{mask_text(str(r['recipient']))} {r['template']} "
                      f"(attempts {r['attempts']}): {mask_text(str(r['last_error']))}",
                      highlight=False)
    console.print(f"{len(rows)} message(s) need attention")


@notify_cli.command("retry")
def notify_retry(ids: Annotated[list[int] | None, typer.Argument()] = None,
                 all_: Annotated[bool, typer.Option("--all")] = False,
                 force: Annotated[list[int] | None, typer.Option(
                     "--force", help="requeue this 'unknown' message (repeat per id) once the "
                     "gateway confirmed it never went out")] = None) -> None:
    """Requeue parked messages (by id, or --all); an 'unknown' one only with --force <id>.
    A message the records show as handed over (gateway id, sent time, or an SMSC delivery
    receipt for it or its handset since it was handed over) is never resent."""
    from services.notify import repository as repo

    if not ids and not all_ and not force:
        raise typer.BadParameter("give message ids, --all or --force <id>")
    _stack_env()
    named = sorted(set(ids or []) | set(force or []))

    async def run() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        conn = await _notify_conn()
        try:
            done = [dict(r) for r in await repo.requeue(conn, None if all_ else named, force)]
            refused = [dict(r) for r in await repo.not_requeueable(conn, named)
                       if r["id"] not in {d["id"] for d in done}]
            return done, refused
        finally:
            await conn.close()

    requeued, refused = asyncio.run(run())
    for r in refused:
        why = ("handed over to the gateway: never resent" if r["handed_over"]
               else "the SMSC's delivery receipts show it went out: never resent"
               if r["receipted"]
               else "never sent, a value is missing (see the reason in 'medins notify "
               "parked'): contact the person" if r["not_sent"]
               else "outcome unknown: check with the gateway, then --force "
               f"{r['id']}" if r["status"] == "unknown" else f"is {r['status']}")
        console.print(f"#{r['id']} not requeued: {why}", highlight=False)
    console.print(f"requeued {len(requeued)} message(s)")
    if refused:
        raise typer.Exit(1)


from shared.ops_cli import deadletters_cli, outbox_cli  # noqa: E402 - after the core commands
from shared.ops_cli import prune as _prune  # noqa: E402

cli.command("prune")(_prune)

cli.add_typer(deadletters_cli, name="deadletters")
cli.add_typer(outbox_cli, name="outbox")

from shared.policy_cli import policy_cli  # noqa: E402 - after the core commands

cli.add_typer(policy_cli, name="policy")

from shared.calendar_cli import calendar_cli  # noqa: E402 - after the core commands

cli.add_typer(calendar_cli, name="calendar")

from shared.trust.cli import keys_cli  # noqa: E402 - after the core commands

cli.add_typer(keys_cli, name="keys")

from shared.data_keys_cli import data_keys_cli  # noqa: E402 - after the core commands

cli.add_typer(data_keys_cli, name="data-keys")


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        typer.echo(f"medins {version('medins')}")
        raise typer.Exit()


@cli.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="print the version and exit")] = False
             ) -> None:
    """Regional medical-insurance platform (不见面办理)."""


def main() -> None:
    """Operators get one line on stderr and an exit code for an unreachable database or
    broker, never a traceback."""
    import os
    import sys

    import asyncpg
    from aiokafka.errors import KafkaError

    if sys.argv[1:2] == ["worker"] or os.environ.get("MEDINS_DEBUG"):
        cli()  # a worker's crash belongs in its log with the whole traceback
        return
    try:
        cli()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
            KafkaError) as exc:
        print(f"medins: {type(exc).__name__}: {exc or 'unreachable'}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
