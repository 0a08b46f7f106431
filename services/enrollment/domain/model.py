"""Insured person and application state, and the insured-status transition table."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from services.enrollment.domain.errors import RuleViolation


class InsuredStatus(StrEnum):
    NONE = "none"
    PENDING = "pending"  # approved, waiting for the tax authority's payment
    ACTIVE = "active"
    SUSPENDED = "suspended"  # stopped paying (停保)
    TERMINATED = "terminated"  # death (死亡注销)
    TRANSFERRED_OUT = "transferred_out"


# How a person reads a status (texts never show the codes).
STATUS_NAMES: dict[str, str] = {
    "none": "未参保", "pending": "待缴费", "active": "正常", "suspended": "暂停",
    "terminated": "终止", "transferred_out": "已转出",
}

ALLOWED_TRANSITIONS: dict[InsuredStatus, frozenset[InsuredStatus]] = {
    # Employer enrollment makes a person active at once: the employer contributes monthly.
    # A death is recorded whatever the status: every record of the person ends there.
    InsuredStatus.NONE: frozenset({InsuredStatus.PENDING, InsuredStatus.ACTIVE,
                                   InsuredStatus.TERMINATED}),
    InsuredStatus.PENDING: frozenset({InsuredStatus.ACTIVE, InsuredStatus.TERMINATED}),
    InsuredStatus.ACTIVE: frozenset(
        {InsuredStatus.SUSPENDED, InsuredStatus.TERMINATED, InsuredStatus.TRANSFERRED_OUT}),
    InsuredStatus.SUSPENDED: frozenset(
        {InsuredStatus.PENDING, InsuredStatus.ACTIVE, InsuredStatus.TERMINATED,
         InsuredStatus.TRANSFERRED_OUT}),
    InsuredStatus.TERMINATED: frozenset(),
    # Someone who moved away may later enroll here again.
    InsuredStatus.TRANSFERRED_OUT: frozenset({InsuredStatus.PENDING, InsuredStatus.ACTIVE,
                                              InsuredStatus.TERMINATED}),
}


class ApplicationState(StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    PAID = "paid"


@dataclass
class Person:
    person_id: str
    name: str
    mobile: str
    email: str | None
    insurance_type: str
    status: InsuredStatus = InsuredStatus.NONE
    paid_until: date | None = None
    employer_code: str | None = None
    retired: bool = False

    @property
    def has_personal_account(self) -> bool:
        """Employee insurance (including flexible workers enrolled under it) has an account."""
        return self.insurance_type in ("employee", "flexible")

    def transition(self, to: InsuredStatus) -> InsuredStatus:
        """Move to `to` if the table allows it; returns the previous status."""
        if to not in ALLOWED_TRANSITIONS[self.status]:
            raise RuleViolation(
                "illegal_status_transition",
                f"insured status cannot change from {self.status} to {to}",
            )
        previous, self.status = self.status, to
        return previous


@dataclass
class Application:
    application_id: str
    person_id: str
    insurance_type: str
    channel: str
    state: ApplicationState = ApplicationState.SUBMITTED
    reasons: list[str] = field(default_factory=list)
    # The channel's number when it differs from the id (another person's application had
    # it): a channel's numbers are unique per person only.
    channel_ref: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state in (ApplicationState.SUBMITTED, ApplicationState.APPROVED)
