"""Collects what every service knows about a reference, straight from their schemas."""
from __future__ import annotations

from typing import Any

from shared.db.pool import connect
from shared.services import load_spec
from shared.settings import SERVICES, PlatformSettings


async def collect_status(settings: PlatformSettings, ref: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for service in SERVICES:
        conn = await connect(settings.database_url, settings.schema_for(service))
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1",
                                       settings.schema_for(service)):
                continue  # this region does not run that service
            result = await load_spec(service).status_query(conn, ref)
        finally:
            await conn.close()
        if result is not None:
            found[service] = result
    return found
