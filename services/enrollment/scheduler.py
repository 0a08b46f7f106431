"""Applies what falls due by date: scheduled status changes, lapsed periods, deferred changes."""
from __future__ import annotations

from services.enrollment.handlers import apply_due_changes
from shared.db.pool import Database
from shared.messaging.timer import Timer
from shared.settings import EnrollmentSettings, PlatformSettings


def due_changes(db: Database, settings: PlatformSettings) -> Timer:
    # Each applied change carries its own cause (the stop request); the tick only carries it.
    interval = settings.due_check_seconds if isinstance(settings, EnrollmentSettings) else 60.0
    return Timer(db, settings, "enrollment", "due-changes", apply_due_changes, interval)
