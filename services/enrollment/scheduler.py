"""Applies scheduled status changes when they fall due (a stop after the paid period)."""
from __future__ import annotations

from services.enrollment.handlers import apply_due_changes
from shared.db.pool import Database
from shared.messaging.timer import Timer
from shared.settings import PlatformSettings


def due_changes(db: Database, settings: PlatformSettings) -> Timer:
    # Each applied change carries its own cause (the stop request); the tick only carries it.
    return Timer(db, settings, "enrollment", "due-changes", apply_due_changes)
