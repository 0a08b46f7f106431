"""Remote-treatment filing and accident-injury filing rules (SPEC enrollment 5 and 8)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from services.enrollment.domain.errors import RuleViolation
from services.enrollment.domain.model import InsuredStatus, Person
from shared.clock import china_date
from shared.contracts.channels import AccidentInjuryFiled, RemoteTreatmentFilingApplied
from shared.contracts.common import sender_scoped
from shared.contracts.hospital import EmergencyAdmissionFlagged
from shared.policy import AccidentFilingLimits, Limit

LONG_TERM_BACKFILL_DAYS = 5  # [003] a long-term filing may start 5 days before filing
TEMPORARY_VALID_DAYS = 180  # practice: a temporary filing without an end lasts six months


@dataclass
class Filing:
    filing_id: str
    person_id: str
    kind: str  # temporary, long_term, referral
    source: str  # application, emergency_admission
    treatment_area: str
    start_date: date
    end_date: date | None
    chronic_diseases: list[str] = field(default_factory=list)
    state: str = "active"

    @property
    def benefit_level(self) -> str:
        return self.kind


def _require_active(person: Person | None, what: str) -> Person:
    if person is None or person.status != InsuredStatus.ACTIVE:
        raise RuleViolation("not_insured", f"person_id: {what} needs active insurance here "
                            f"(status {person.status if person else 'not insured here'})")
    return person


def accept_remote_filing(cmd: RemoteTreatmentFilingApplied, person: Person | None, region: str,
                         temporary_valid_days: int = TEMPORARY_VALID_DAYS,
                         filed_on: date | None = None) -> Filing:
    """`filed_on` is the day the platform received the filing (the backfill window counts
    from it, never from the sender's own date)."""
    _require_active(person, "a remote-treatment filing")
    filed_on = filed_on or china_date(cmd.submitted_at)
    if cmd.treatment_area[:4] == region[:4]:
        raise RuleViolation("not_remote", "treatment_area: must be outside the insured city "
                            f"{region}")
    if cmd.treatment_area[2:] == "0000" and cmd.treatment_area[:2] == region[:2]:
        # A filing for one's own province would cover the insured city itself.
        raise RuleViolation("not_remote", "treatment_area: name the city or county outside "
                            f"the insured city {region}, not the whole province")
    end = cmd.end_date
    if cmd.kind == "long_term":
        if cmd.long_term_reason is None:
            raise RuleViolation("reason_required",
                                "long_term_reason: required for a long-term filing")
        if cmd.is_student and cmd.long_term_reason == "resident_elsewhere":
            raise RuleViolation("student_not_resident", "long_term_reason: students file as "
                                "'student', not as residents living elsewhere")
        earliest = filed_on - timedelta(days=LONG_TERM_BACKFILL_DAYS)
        if cmd.start_date < earliest:
            raise RuleViolation("backfill_too_early", "start_date: a long-term filing may start "
                                f"at most {LONG_TERM_BACKFILL_DAYS} days before the filing day "
                                f"(earliest {earliest.isoformat()})")
        end = None  # valid until the person changes it or their insured status changes
    elif end is None:
        end = cmd.start_date + timedelta(days=temporary_valid_days)
    if end is not None and end < cmd.start_date:
        raise RuleViolation("end_before_start", "end_date: must not be before start_date")
    return Filing(cmd.filing_id, cmd.person_id, cmd.kind, "application", cmd.treatment_area,
                  cmd.start_date, end, list(cmd.chronic_diseases))


def emergency_filing(flag: EmergencyAdmissionFlagged, person: Person | None,
                     temporary_valid_days: int = TEMPORARY_VALID_DAYS,
                     region: str | None = None) -> Filing | None:
    """An admission flagged as emergency counts as filed, at the temporary level [003]. At a
    hospital inside the insured city (`region`, first 4 digits) nothing is remote: no filing."""
    if not flag.emergency:
        return None
    if region is not None and flag.treatment_area[:4] == region[:4]:
        return None
    _require_active(person, "an emergency admission filing")
    # The admission number is the hospital's: scoped by the hospital that sent it.
    return Filing(sender_scoped("EMG", flag.hospital_code, flag.admission_id), flag.person_id,
                  "temporary", "emergency_admission",
                  flag.treatment_area, flag.admitted_on,
                  flag.admitted_on + timedelta(days=temporary_valid_days))


def filings_ended_by_status(filings: list[Filing], new_status: InsuredStatus) -> list[Filing]:
    """A change of insured status away from active ends every open filing [003]."""
    if new_status == InsuredStatus.ACTIVE:
        return []
    return [f for f in filings if f.state == "active"]


@dataclass(frozen=True)
class AccidentDeadline:
    """The last day an accident injury may be filed; provisional when the working days ran
    past the official holiday schedules (counted on weekdays only until the year's file)."""

    on: date
    provisional: bool = False


# Counts a limit from a start day: (last day, provisional).
DueCounter = Callable[[date, Limit], tuple[date, bool]]


def accept_accident_filing(cmd: AccidentInjuryFiled, person: Person | None,
                           limits: AccidentFilingLimits, due: DueCounter,
                           filed_on: date) -> AccidentDeadline:
    """The deadline the filing met, by the limits in force on the admission day [002 十三];
    late or improper filings are refused. `filed_on` is the platform's day of receipt. A
    provisional deadline never refuses: a holiday the schedule does not show yet could only
    move it later."""
    _require_active(person, "an accident-injury filing")
    if cmd.admitted_on > filed_on:
        raise RuleViolation("future_date", "admitted_on: must not be after the filing day")
    if not cmd.no_third_party_declared:
        raise RuleViolation("third_party", "no_third_party_declared: this filing is only for "
                            "injuries without a liable third party")
    limit = limits.limit(cmd.in_city)
    deadline, provisional = due(cmd.admitted_on, limit)
    if filed_on > deadline and not provisional:
        where = "an in-city" if cmd.in_city else "an out-of-city"
        raise RuleViolation("filed_too_late", f"submitted_at: {where} accident injury must be "
                            f"filed within {limit} of admission, by {deadline.isoformat()}")
    return AccidentDeadline(deadline, provisional)
