"""Read side of enrollment: a person's status, applications, payments and history."""
from __future__ import annotations

from services.enrollment.repository import status_of

__all__ = ["status_of"]
