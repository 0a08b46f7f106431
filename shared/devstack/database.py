"""PostgreSQL for dev and tests: DATABASE_URL when set, else an embedded server (pgserver)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DevDatabase:
    url: str
    server: Any = field(default=None, repr=False)

    @classmethod
    def start(cls, data_dir: Path) -> DevDatabase:
        configured = os.environ.get("MEDINS_DATABASE_URL") or os.environ.get("DATABASE_URL")
        if configured:
            return cls(configured)
        import pgserver  # imported late: only needed when no server is configured

        data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
        return cls(server.get_uri(), server)

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
