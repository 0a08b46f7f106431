"""Staff review of a case (death cancellation, chronic disease, civil-servant benefit)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.enrollment.domain.errors import RuleViolation


def decide(case: Mapping[str, Any] | None, kind: str, subject: str, decision: str,
           reasons: list[str]) -> list[str]:
    """Check a review may be applied; returns the reasons to record."""
    if case is None or case["kind"] != kind:
        raise RuleViolation("unknown_application", f"application_id: no {kind} application "
                            "with this id")
    if case["subject"] != subject:
        raise RuleViolation("subject_mismatch", "the application belongs to someone else")
    if case["state"] != "submitted":
        raise RuleViolation("review_not_pending", f"application is {case['state']}, not "
                            "awaiting review")
    if decision == "reject" and not reasons:
        raise RuleViolation("reasons_required", "a rejection must give reasons")
    return list(reasons)
