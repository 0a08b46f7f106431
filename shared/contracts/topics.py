"""Logical topic names and their physical names per namespace and region."""
from __future__ import annotations

ENROLLMENT_REQUESTS = "enrollment.requests"
TAX_PAYMENTS = "tax.payments"
ENROLLMENT_EVENTS = "enrollment.events"
TRANSFER_REQUESTS = "transfer.requests"
TRANSFER_EVENTS = "transfer.events"
# A region's inbox for the inter-region transfer contract: partners write into it.
TRANSFER_PARTNER = "transfer.partner"
REIMBURSEMENT_REQUESTS = "reimbursement.requests"
REIMBURSEMENT_EVENTS = "reimbursement.events"
PAYMENT_INSTRUCTIONS = "payments.instructions"
PAYMENT_RESULTS = "payments.results"
NOTIFY_REQUESTS = "notify.requests"
NOTIFY_EVENTS = "notify.events"
DEAD_LETTER = "deadletter"

ALL_TOPICS = (
    ENROLLMENT_REQUESTS,
    TAX_PAYMENTS,
    ENROLLMENT_EVENTS,
    TRANSFER_REQUESTS,
    TRANSFER_EVENTS,
    TRANSFER_PARTNER,
    REIMBURSEMENT_REQUESTS,
    REIMBURSEMENT_EVENTS,
    PAYMENT_INSTRUCTIONS,
    PAYMENT_RESULTS,
    NOTIFY_REQUESTS,
    NOTIFY_EVENTS,
    DEAD_LETTER,
)


def physical(logical: str, *, region: str, namespace: str = "") -> str:
    """Region-scoped name: regions sharing one cluster never read each other's topics."""
    return f"{namespace}medins.{region}.{logical}"
