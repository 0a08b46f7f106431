"""`medins keys`: producers' key pairs, their registration in the trust store, revocation."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shared.settings import PlatformSettings
from shared.trust import TrustStore, create_key

keys_cli = typer.Typer(help="Producers' signing keys and the trust store.", no_args_is_help=True)
console = Console()


def _store() -> tuple[PlatformSettings, TrustStore]:
    settings = PlatformSettings()
    return settings, TrustStore(settings.trust_dir)


@keys_cli.command("create")
def create(producer: Annotated[str, typer.Argument(
               help="producer name as in the authorisation table, e.g. tax, region-370100")],
           keyring: Annotated[Path | None, typer.Option(
               help="folder for the private key (default MEDINS_KEYRING_DIR)")] = None) -> None:
    """Make a key pair: the private key file (0600) for the producer, the public key
    registered in the trust store (valid at once, beside the producer's other keys)."""
    settings, store = _store()
    try:
        key, path = create_key(producer, keyring or settings.keyring_dir, store)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    console.print(f"created {key.name}: private key {path} (give it to the producer only)")


@keys_cli.command("add")
def add(producer: str, public_key: Path,
        key_id: Annotated[str | None, typer.Option(
            help="key id (default: the file name without .pem/.pub)")] = None) -> None:
    """Register a public key a producer generated itself: its private key never leaves it."""
    _, store = _store()
    try:
        path = store.register(producer, key_id or public_key.stem, public_key.read_bytes())
    except (OSError, ValueError) as exc:
        console.print(f"[red]cannot register {public_key}: {exc}[/]")
        raise typer.Exit(2) from None
    console.print(f"registered {producer}/{key_id or public_key.stem} ({path})")


@keys_cli.command("revoke")
def revoke(key: Annotated[str, typer.Argument(help="<producer>/<key id>")],
           reason: Annotated[str, typer.Option(help="kept in the revocation list")] = ""
           ) -> None:
    """Revoke a key: every worker refuses what it signs within seconds, without a restart."""
    _, store = _store()
    producer, _, key_id = key.partition("/")
    if f"{producer}/{key_id}" not in store.keys_of(producer):
        console.print(f"[yellow]{key} is not registered; revoked anyway[/]")
    store.revoke(key, reason)
    console.print(f"revoked {key}")


@keys_cli.command("list")
def list_keys() -> None:
    """Registered keys per producer, revoked ones marked."""
    _, store = _store()
    for producer in store.producers():
        for name in store.keys_of(producer):
            mark = " [red](revoked)[/]" if name in store.revoked else ""
            console.print(f"{name}{mark}")
