"""Enrollment domain: status transitions, application review, payment confirmation."""
from datetime import UTC, date, datetime

import pytest

from services.enrollment.domain import enrollment as rules
from services.enrollment.domain.errors import RuleViolation
from services.enrollment.domain.model import (
    ALLOWED_TRANSITIONS,
    ApplicationState,
    InsuredStatus,
    Person,
)
from shared.contracts.channels import EnrollmentApplicationSubmitted, EnrollmentReviewDecided
from shared.contracts.enrollment import InsuredStatusChanged, PaymentParked
from shared.contracts.tax import ContributionPaymentConfirmed

PID = "210202198001011238"
NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)
TODAY = date(2026, 3, 1)


def application(app_id: str = "APP-1", region: str = "210200") -> EnrollmentApplicationSubmitted:
    return EnrollmentApplicationSubmitted(
        application_id=app_id, person_id=PID, name="王伟", insurance_type="resident",
        mobile="13800138000", email="w@example.cn", channel="wechat", region_code=region,
        submitted_at=NOW)


def review(decision: str, reasons: list[str] | None = None) -> EnrollmentReviewDecided:
    return EnrollmentReviewDecided(application_id="APP-1", person_id=PID, decision=decision,  # type: ignore[arg-type]
                                   reasons=reasons or [], reviewer="s1", decided_at=NOW)


def payment(ref: str = "TAX-1", app_id: str | None = "APP-1") -> ContributionPaymentConfirmed:
    return ContributionPaymentConfirmed(
        payment_ref=ref, person_id=PID, application_id=app_id, insurance_type="resident",
        period_start=date(2026, 1, 1), period_end=date(2026, 12, 31), amount_fen=40000,
        paid_at=NOW)


def test_transition_table_matches_spec() -> None:
    assert ALLOWED_TRANSITIONS[InsuredStatus.ACTIVE] == {
        InsuredStatus.SUSPENDED, InsuredStatus.TERMINATED, InsuredStatus.TRANSFERRED_OUT}
    assert InsuredStatus.ACTIVE in ALLOWED_TRANSITIONS[InsuredStatus.SUSPENDED]
    assert ALLOWED_TRANSITIONS[InsuredStatus.TERMINATED] == frozenset()


def test_illegal_transition_is_refused_and_not_applied() -> None:
    person = Person(PID, "王伟", "13800138000", None, "resident", InsuredStatus.TERMINATED)
    with pytest.raises(RuleViolation) as err:
        person.transition(InsuredStatus.ACTIVE)
    assert err.value.rule == "illegal_status_transition"
    assert person.status == InsuredStatus.TERMINATED


def test_apply_approve_pay_makes_person_active_for_paid_period() -> None:
    submitted = rules.submit_application(application(), None, None, "210200")
    assert submitted.application and submitted.application.state == ApplicationState.SUBMITTED
    person = submitted.person
    assert person is not None and person.status == InsuredStatus.NONE
    approved = rules.review_application(review("approve"), submitted.application, person)
    assert person.status == InsuredStatus.PENDING
    paid = rules.confirm_payment(payment(), person, approved.application, [], TODAY)
    assert person.status == InsuredStatus.ACTIVE and person.paid_until == date(2026, 12, 31)
    change = [e for e in paid.events if isinstance(e, InsuredStatusChanged)]
    assert change and change[0].from_status == "pending" and change[0].to_status == "active"
    assert paid.application and paid.application.state == ApplicationState.PAID


def test_rejection_needs_reasons_and_allows_resubmission() -> None:
    submitted = rules.submit_application(application(), None, None, "210200")
    with pytest.raises(RuleViolation, match="reasons"):
        rules.review_application(review("reject"), submitted.application, submitted.person)
    rejected = rules.review_application(review("reject", ["照片不清晰"]), submitted.application,
                                        submitted.person)
    assert rejected.application and rejected.application.state == ApplicationState.REJECTED
    again = rules.submit_application(application("APP-2"), submitted.person,
                                     rejected.application, "210200")
    assert again.application and again.application.application_id == "APP-2"


def test_open_application_blocks_a_second_one() -> None:
    submitted = rules.submit_application(application(), None, None, "210200")
    with pytest.raises(RuleViolation) as err:
        rules.submit_application(application("APP-2"), submitted.person, submitted.application,
                                 "210200")
    assert err.value.rule == "application_open"


def test_application_for_another_region_is_refused() -> None:
    with pytest.raises(RuleViolation, match="region_code 370100"):
        rules.submit_application(application(region="370100"), None, None, "210200")


def test_review_of_decided_application_is_refused() -> None:
    submitted = rules.submit_application(application(), None, None, "210200")
    rules.review_application(review("approve"), submitted.application, submitted.person)
    with pytest.raises(RuleViolation) as err:
        rules.review_application(review("approve"), submitted.application, submitted.person)
    assert err.value.rule == "review_not_pending"


@pytest.mark.parametrize("state, expected", [
    (None, "unknown"), ("submitted", "not yet approved"), ("rejected", "was rejected")])
def test_payment_without_approved_application_is_parked(state: str | None,
                                                        expected: str) -> None:
    submitted = rules.submit_application(application(), None, None, "210200")
    app = submitted.application
    if state == "rejected":
        rules.review_application(review("reject", ["x"]), app, submitted.person)
    outcome = rules.confirm_payment(payment(), submitted.person, app if state else None, [],
                                    TODAY)
    assert outcome.parked_reason and expected in outcome.parked_reason
    assert isinstance(outcome.events[0], PaymentParked)
    assert submitted.person and submitted.person.status == InsuredStatus.NONE


def test_payment_for_unknown_person_is_parked() -> None:
    outcome = rules.confirm_payment(payment(app_id=None), None, None, [], TODAY)
    assert outcome.parked_reason == "no enrollment for this person"
