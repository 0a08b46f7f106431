"""`medins data-keys`: the keys sealing health and contact data at rest, rotation, re-sealing."""
from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated, Any

import typer
from rich.console import Console

from shared.db import sealed
from shared.settings import SERVICES, PlatformSettings

data_keys_cli = typer.Typer(help="Data keys: health and contact data sealed at rest.",
                            no_args_is_help=True)
console = Console()
Regions = Annotated[str, typer.Option(help="comma-separated region codes (default "
                                           "MEDINS_REGION)")]


def _settings() -> PlatformSettings:
    from shared.cli import _stack_env

    _stack_env()
    settings = PlatformSettings()
    secret = settings.data_keys.get_secret_value() if settings.data_keys else None
    sealed.configure(secret, settings.data_keys_path())
    return settings


def _regions(settings: PlatformSettings, regions: str) -> list[str]:
    return [r.strip() for r in regions.split(",") if r.strip()] or [settings.region]


def _columns() -> dict[str, tuple[sealed.Sealed, ...]]:
    from shared.services import load_spec

    return {service: load_spec(service).sealed for service in SERVICES}


async def _each_schema(settings: PlatformSettings, regions: list[str]
                       ) -> AsyncIterator[tuple[str, tuple[sealed.Sealed, ...], Any]]:
    from shared.db.pool import connect

    for region in regions:
        for service, columns in _columns().items():
            schema = settings.schema_for(service, region)
            conn = await connect(settings.database_url, schema)
            try:
                if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1",
                                           schema):
                    continue
                yield schema, columns, conn
            finally:
                await conn.close()


async def _usage(settings: PlatformSettings, regions: list[str]
                 ) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    async for schema, columns, conn in _each_schema(settings, regions):
        for col in columns:
            found[f"{schema}.{col.name}"] = await sealed.key_counts(conn, col)
    return found


async def _letters(settings: PlatformSettings, regions: list[str]) -> Counter[str]:
    """Dead letters per data key over the regions' dead-letter topics."""
    from shared.messaging.dead_letters import letters_per_key

    total: Counter[str] = Counter()
    for region in regions:
        total += await letters_per_key(settings.model_copy(update={"region": region}))
    return total


def _writable(settings: PlatformSettings) -> None:
    if settings.data_keys is not None:
        console.print("[red]the data keys come from MEDINS_DATA_KEYS: add the key there (a "
                      "line printed by `medins data-keys new`), then restart the workers[/]")
        raise typer.Exit(2)


@data_keys_cli.command("create")
def create() -> None:
    """Make the data keys file (one sealing and one hashing key, mode 0600) if missing."""
    settings = _settings()
    _writable(settings)
    path = settings.data_keys_path()
    made = sealed.create_keys_file(path)
    console.print(f"{'created' if made else 'kept the existing'} {path}")


@data_keys_cli.command("new")
def new(kind: Annotated[str, typer.Argument(help="seal or hash")] = sealed.SEAL) -> None:
    """Print a new key line without storing it (for a key held in MEDINS_DATA_KEYS or a
    secret store)."""
    if kind not in (sealed.SEAL, sealed.HASH):
        raise typer.BadParameter("seal or hash")
    typer.echo(sealed.format_key(sealed.new_key(kind)), nl=False)


@data_keys_cli.command("rotate")
def rotate(hash_too: Annotated[bool, typer.Option(
        "--hash", help="also a new hashing key (look-up columns are re-hashed)")] = False
           ) -> None:
    """Add a new sealing key that seals everything written from now on (workers read the
    file again within seconds); older keys keep opening what they sealed until `reseal`."""
    settings = _settings()
    _writable(settings)
    path = settings.data_keys_path()
    key = sealed.add_key(path, sealed.SEAL)
    console.print(f"new sealing key {key.key_id} in {path}")
    if hash_too:
        hkey = sealed.add_key(path, sealed.HASH)
        console.print(f"new hashing key {hkey.key_id}")
    console.print("then: medins data-keys reseal; medins data-keys status; "
                  "medins data-keys retire <old key id>")


@data_keys_cli.command("reseal")
def reseal(regions: Regions = "",
           batch: Annotated[int, typer.Option(help="rows per transaction")] = 500) -> None:
    """Seal again, in batches, every value under an older key (and plaintext left from
    before sealing) with the current keys; safe beside running workers."""
    settings = _settings()

    async def run() -> int:
        total = 0
        async for schema, columns, conn in _each_schema(settings, _regions(settings, regions)):
            for col in columns:
                n = await sealed.reseal(conn, col, batch=batch)
                if n:
                    console.print(f"{schema}.{col.name}: {n} row(s) sealed again")
                total += n
        return total

    console.print(f"{asyncio.run(run())} row(s) sealed again under the current keys")


@data_keys_cli.command("status")
def status(regions: Regions = "") -> None:
    """Rows per key, per column: a key no row uses can be retired."""
    settings = _settings()
    ring = sealed.keys()
    usage = asyncio.run(_usage(settings, _regions(settings, regions)))
    for name, counts in usage.items():
        shown = ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "empty"
        console.print(f"{name}: {shown}", highlight=False)
    totals = sealed.columns_in_use(usage.values())
    for key_id in [*ring.seal_keys, *ring.hash_keys]:
        mark = " (current)" if key_id in (ring.current_seal.key_id,
                                          ring.current_hash.key_id) else ""
        console.print(f"key {key_id}{mark}: {totals.get(key_id, 0)} row(s)", highlight=False)
    if totals.get("(plaintext)"):
        console.print(f"[yellow]{totals['(plaintext)']} value(s) not sealed yet: "
                      "medins data-keys reseal[/]")


@data_keys_cli.command("retire")
def retire(key_id: str, regions: Regions = "") -> None:
    """Remove a key from the file once no row of the regions' schemas uses it."""
    settings = _settings()
    _writable(settings)
    ring = sealed.keys()
    if key_id in (ring.current_seal.key_id, ring.current_hash.key_id):
        console.print(f"[red]{key_id} is a current key: rotate first[/]")
        raise typer.Exit(1)
    if key_id not in ring.seal_keys and key_id not in ring.hash_keys:
        console.print(f"[red]no data key {key_id}[/]")
        raise typer.Exit(2)
    in_use = sealed.columns_in_use(
        asyncio.run(_usage(settings, _regions(settings, regions))).values()).get(key_id, 0)
    if in_use:
        console.print(f"[red]{in_use} row(s) still use {key_id}: medins data-keys reseal[/]")
        raise typer.Exit(1)
    letters = asyncio.run(_letters(settings, _regions(settings, regions))).get(key_id, 0)
    if letters:
        # A letter cannot be re-sealed in place on the topic: the key stays until it expires.
        console.print(f"[red]{letters} dead letter(s) are sealed under {key_id}: keep it until "
                      f"they expire ({settings.deadletter_retention_days:g} days after they "
                      "were written)[/]")
        raise typer.Exit(1)
    sealed.remove_key(settings.data_keys_path(), key_id)
    console.print(f"retired {key_id}")
