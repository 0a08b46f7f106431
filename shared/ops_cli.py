"""Operator repair commands: dead letters (list, show, replay) and set-aside outbox rows."""
from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console

from shared.settings import SERVICES, PlatformSettings

console = Console(soft_wrap=True)
deadletters_cli = typer.Typer(help="Dead letters: what was refused and why; replay after a fix.",
                              no_args_is_help=True)
outbox_cli = typer.Typer(help="Outbox rows set aside because they could not be published.",
                         no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]


@dataclass
class DeadLetter:
    """One dead letter as read from the region's dead-letter topic."""

    partition: int
    offset: int
    at: str
    service: str
    reason: str
    original_topic: str
    original_partition: str
    original_offset: str
    key: str | None
    value: bytes
    # The original's signature headers (shared.trust): a replay verifies as the original.
    signature: tuple[tuple[str, bytes], ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    def summary(self) -> dict[str, Any]:
        from shared.observability.masking import mask_text, names_in_bytes

        # A reason may quote the letter's own names (a relative's, an agent's): masked too.
        names = names_in_bytes(self.value)
        shown = asdict(self) | {"ref": self.ref, "reason": mask_text(self.reason, names),
                                "key": mask_text(self.key or "")}
        shown.pop("value")
        shown.pop("signature")
        shown["bytes"] = len(self.value)
        return shown


def replay_topic(letter: DeadLetter, namespace: str) -> str:
    """Where a replay goes: the original topic, or for a letter from a shared input topic that
    was retired when inputs were split by producer (`enrollment.requests`, ...), its event
    type's topic now, so that letters older than the split still reach a consumer."""
    from shared.contracts import EVENT_TYPES
    from shared.contracts.topics import ALL_TOPICS, logical, physical

    found = logical(letter.original_topic, namespace)
    if found is None or found[1] in ALL_TOPICS:
        return letter.original_topic
    try:
        doc = json.loads(letter.value)
    except ValueError:
        return letter.original_topic
    model = EVENT_TYPES.get(doc.get("type")) if isinstance(doc, dict) else None
    if model is None:
        return letter.original_topic
    return physical(model.topic, region=found[0], namespace=namespace)


def _settings(region: str) -> PlatformSettings:
    from shared.cli import _stack_env

    _stack_env()
    return PlatformSettings(**({"region": region} if region else {}))


async def read_dead_letters(settings: PlatformSettings, idle_ms: int = 1500) -> list[DeadLetter]:
    """The whole dead-letter topic of the region, oldest first, each letter opened."""
    from shared.messaging.dead_letters import open_letter, read_letter_records

    found: list[DeadLetter] = []
    for r in await read_letter_records(settings, idle_ms):
        headers = {k: v.decode(errors="replace") for k, v in r.headers or ()}
        value, key, was_sealed = open_letter(r.value, r.headers or ())
        key = key if was_sealed else r.key
        found.append(DeadLetter(
            r.partition, r.offset, datetime.fromtimestamp(r.timestamp / 1000, UTC).isoformat(),
            headers.get("dlq-service", "?"), headers.get("dlq-reason", "?"),
            headers.get("dlq-topic", "?"), headers.get("dlq-partition", "?"),
            headers.get("dlq-offset", "?"), key.decode(errors="replace") if key else None,
            value, tuple((k, v) for k, v in r.headers or ()
                         if k in ("ce_signature", "ce_signingkey"))))
    return sorted(found, key=lambda d: (d.at, d.partition, d.offset))


def _pick(letters: list[DeadLetter], refs: list[str]) -> list[DeadLetter]:
    by_ref = {d.ref: d for d in letters}
    unknown = [r for r in refs if r not in by_ref]
    if unknown:
        raise typer.BadParameter(f"no dead letter {', '.join(unknown)} (refs are partition:offset"
                                 " as `medins deadletters list` shows them)")
    return [by_ref[r] for r in refs]


@deadletters_cli.command("list")
def deadletters_list(region: Annotated[str, typer.Option()] = "", as_json: JsonOption = False
                     ) -> None:
    """Every dead letter of the region: when, which service, from which topic, and why."""
    letters = asyncio.run(read_dead_letters(_settings(region)))
    if as_json:
        typer.echo(json.dumps([d.summary() for d in letters], ensure_ascii=False))
        return
    for d in letters:
        s = d.summary()
        console.print(f"{s['ref']:>8} {s['at'][:19]} {s['service']:<13} {s['original_topic']}: "
                      f"{s['reason']}", highlight=False)
    console.print(f"{len(letters)} dead letter(s)")


@deadletters_cli.command("show")
def deadletters_show(ref: str, region: Annotated[str, typer.Option()] = "",
                     as_json: JsonOption = False) -> None:
    """One dead letter with its body (personal data masked)."""
    from shared.observability.masking import mask_text, names_in_bytes

    [letter] = _pick(asyncio.run(read_dead_letters(_settings(region))), [ref])
    # The body's name fields are found by key (even in a truncated body) and masked.
    body = mask_text(letter.value.decode(errors="replace"), names_in_bytes(letter.value))
    if as_json:
        typer.echo(json.dumps(letter.summary() | {"body": body}, ensure_ascii=False))
        return
    for k, v in letter.summary().items():
        console.print(f"{k}: {v}", highlight=False)
    console.print(body, highlight=False)


@deadletters_cli.command("replay")
def deadletters_replay(refs: Annotated[list[str], typer.Argument(help="partition:offset")],
                       region: Annotated[str, typer.Option()] = "") -> None:
    """Send the original bytes again to the original topic, after the cause was fixed. Safe to
    repeat: consumers skip an event id they already processed (ids are kept
    MEDINS_RETENTION_PROCESSED_DAYS, longer than any dead letter is)."""
    from aiokafka import AIOKafkaProducer

    from shared.messaging.admin import bootstrap_servers, kafka_client_options

    settings = _settings(region)

    async def run() -> list[DeadLetter]:
        chosen = _pick(await read_dead_letters(settings), refs)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings.broker_url),
                                    acks="all", **kafka_client_options(settings))
        await producer.start()
        try:
            for d in chosen:
                await producer.send_and_wait(replay_topic(d, settings.namespace), d.value,
                                             key=d.key.encode() if d.key else None,
                                             headers=[("dlq-replayed-from", d.ref.encode()),
                                                      *d.signature])
        finally:
            await producer.stop()
        return chosen

    for d in asyncio.run(run()):
        console.print(f"replayed {d.ref} to {replay_topic(d, settings.namespace)}",
                      highlight=False)


async def _service_conn(settings: PlatformSettings, service: str) -> Any:
    from shared.db.pool import connect

    return await connect(settings.database_url, settings.schema_for(service))


@outbox_cli.command("stuck")
def outbox_stuck(region: Annotated[str, typer.Option()] = "", as_json: JsonOption = False
                 ) -> None:
    """Rows each service set aside (topic missing, too large, not authorised), with why."""
    from shared.messaging.outbox import set_aside_rows

    settings = _settings(region)

    async def run() -> list[dict[str, Any]]:
        rows = []
        for service in SERVICES:
            conn = await _service_conn(settings, service)
            try:
                rows += [{"service": service} | dict(r) for r in await set_aside_rows(conn)]
            finally:
                await conn.close()
        return rows

    rows = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(rows, default=str, ensure_ascii=False))
        return
    for r in rows:
        console.print(f"{r['service']}#{r['id']} → {r['topic']} ({r['bytes']} bytes, "
                      f"{r['attempts']} attempt(s)): {r['reason']}", highlight=False)
    console.print(f"{len(rows)} row(s) set aside")


@outbox_cli.command("retry")
def outbox_retry(service: Annotated[str, typer.Argument(help="|".join(SERVICES))],
                 ids: Annotated[list[int] | None, typer.Argument()] = None,
                 all_: Annotated[bool, typer.Option("--all")] = False,
                 region: Annotated[str, typer.Option()] = "") -> None:
    """Put set-aside rows back in the outbox (by id, or --all) once the cause is fixed."""
    from shared.messaging.outbox import retry_set_aside

    if service not in SERVICES:
        raise typer.BadParameter(f"service must be one of {', '.join(SERVICES)}")
    if not ids and not all_:
        raise typer.BadParameter("give row ids or --all")
    settings = _settings(region)

    async def run() -> int:
        conn = await _service_conn(settings, service)
        try:
            return await retry_set_aside(conn, None if all_ else ids)
        finally:
            await conn.close()

    console.print(f"{asyncio.run(run())} row(s) back in the {service} outbox")


def prune(dry_run: Annotated[bool, typer.Option(
              "--dry-run", help="count what would be deleted, delete nothing")] = False,
          regions: Annotated[str, typer.Option(help="comma-separated region codes "
                                                    "(default MEDINS_REGION)")] = "",
          as_json: JsonOption = False) -> None:
    """Delete processed-message ids and set-aside outbox rows older than their retention
    (MEDINS_RETENTION_*_DAYS), as every worker does each MEDINS_RETENTION_INTERVAL_SECONDS."""
    from shared.cli import _stack_env
    from shared.messaging.retention import prune_schemas
    from shared.observability.logging import configure_logging

    _stack_env()
    settings = PlatformSettings()
    # What the job logs (each set-aside row it deletes) goes to stderr, masked; stdout stays
    # the command's answer.
    configure_logging(settings.log_format, settings.log_level)
    chosen = [r.strip() for r in (regions or settings.region).split(",") if r.strip()]
    results = asyncio.run(prune_schemas(settings, list(SERVICES), chosen, dry_run=dry_run))
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, "schemas": results}))
        return
    verb = "would delete" if dry_run else "deleted"
    for where, counts in results.items():
        shown = ", ".join(f"{n} {table}" for table, n in counts.items())
        console.print(f"{where}: {verb} {shown}", highlight=False)
    console.print(f"retention: processed ids {settings.retention_processed_days:g} days, "
                  f"set-aside rows {settings.retention_set_aside_days:g} days"
                  + (" (dry run: nothing deleted)" if dry_run else ""), highlight=False)
