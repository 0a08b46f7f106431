"""Applies plain .sql migrations in order, per schema, recorded in schema_migrations."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MESSAGING_MIGRATIONS = Path(__file__).resolve().parent.parent / "messaging" / "migrations"


@dataclass(frozen=True)
class Migration:
    component: str
    version: str
    path: Path


def discover(component: str, folder: Path) -> list[Migration]:
    return [Migration(component, p.stem, p) for p in sorted(folder.glob("*.sql"))]


def service_migrations(service: str) -> list[Migration]:
    """The shared messaging tables first, then the service's own schema."""
    folder = Path(__file__).resolve().parents[2] / "services" / service / "migrations"
    return discover("messaging", MESSAGING_MIGRATIONS) + discover(service, folder)


async def migrate(conn: asyncpg.Connection, schema: str, migrations: list[Migration]) -> list[str]:
    """Apply what is missing, each in its own transaction; returns applied versions."""
    # Concurrent starters (several workers, `medins up`) serialise on the schema's lock.
    lock_key = zlib.crc32(schema.encode())
    await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
            " component text NOT NULL, version text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"
        )
        done = {
            (r["component"], r["version"])
            for r in await conn.fetch(
                f'SELECT component, version FROM "{schema}".schema_migrations')
        }
        applied = []
        for m in migrations:
            if (m.component, m.version) in done:
                continue
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path TO "{schema}"')
                await conn.execute(m.path.read_text(encoding="utf-8"))
                await conn.execute(
                    "INSERT INTO schema_migrations (component, version) VALUES ($1, $2)",
                    m.component, m.version,
                )
            applied.append(f"{m.component}/{m.version}")
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
