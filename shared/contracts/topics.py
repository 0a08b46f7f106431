"""Logical topic names, one producer kind each, and their physical names per region."""
from __future__ import annotations

# Inputs from outside: each topic has one producer kind, so a broker ACL (deploy/kafka/acls.sh)
# can say "may record a death" apart from "may apply". Where several producers fed one
# service, the name is `<consumer>.from-<producer>`; the producer of each topic is listed in
# shared/trust/authorisation.toml (`topics`), and the consumer refuses a type that is not
# one of its topic's.
ENROLLMENT_FROM_CHANNELS = "enrollment.from-channels"
ENROLLMENT_FROM_REVIEW_DESK = "enrollment.from-review-desk"
ENROLLMENT_FROM_EMPLOYERS = "enrollment.from-employers"
ENROLLMENT_FROM_CIVIL_AFFAIRS = "enrollment.from-civil-affairs"
ENROLLMENT_FROM_HOSPITALS = "enrollment.from-hospitals"
TAX_PAYMENTS = "tax.payments"
TRANSFER_FROM_CHANNELS = "transfer.from-channels"
TRANSFER_FROM_TRANSFER_OFFICE = "transfer.from-transfer-office"
# A region's inbox for the inter-region transfer contract: partners write into it.
TRANSFER_PARTNER = "transfer.partner"
REIMBURSEMENT_FROM_CHANNELS = "reimbursement.from-channels"
REIMBURSEMENT_FROM_REVIEW_DESK = "reimbursement.from-review-desk"
REIMBURSEMENT_FROM_HOSPITALS = "reimbursement.from-hospitals"
REIMBURSEMENT_FROM_EMPLOYERS = "reimbursement.from-employers"
PAYMENT_RESULTS = "payments.results"
NOTIFY_REQUESTS = "notify.requests"

# The region's own services' outputs (signed with the region's key).
ENROLLMENT_EVENTS = "enrollment.events"
TRANSFER_EVENTS = "transfer.events"
REIMBURSEMENT_EVENTS = "reimbursement.events"
PAYMENT_INSTRUCTIONS = "payments.instructions"
NOTIFY_EVENTS = "notify.events"
DEAD_LETTER = "deadletter"

ENROLLMENT_INPUTS = (ENROLLMENT_FROM_CHANNELS, ENROLLMENT_FROM_REVIEW_DESK,
                     ENROLLMENT_FROM_EMPLOYERS, ENROLLMENT_FROM_CIVIL_AFFAIRS,
                     ENROLLMENT_FROM_HOSPITALS, TAX_PAYMENTS)
TRANSFER_INPUTS = (TRANSFER_FROM_CHANNELS, TRANSFER_FROM_TRANSFER_OFFICE, TRANSFER_PARTNER)
REIMBURSEMENT_INPUTS = (REIMBURSEMENT_FROM_CHANNELS, REIMBURSEMENT_FROM_REVIEW_DESK,
                        REIMBURSEMENT_FROM_HOSPITALS, REIMBURSEMENT_FROM_EMPLOYERS,
                        PAYMENT_RESULTS)
NOTIFY_INPUTS = (NOTIFY_REQUESTS,)

ALL_TOPICS = (
    *ENROLLMENT_INPUTS,
    ENROLLMENT_EVENTS,
    *TRANSFER_INPUTS,
    TRANSFER_EVENTS,
    *REIMBURSEMENT_INPUTS,
    REIMBURSEMENT_EVENTS,
    PAYMENT_INSTRUCTIONS,
    *NOTIFY_INPUTS,
    NOTIFY_EVENTS,
    DEAD_LETTER,
)


def physical(logical: str, *, region: str, namespace: str = "") -> str:
    """Region-scoped name: regions sharing one cluster never read each other's topics."""
    return f"{namespace}medins.{region}.{logical}"


def logical(name: str, namespace: str = "") -> tuple[str, str] | None:
    """(region, logical name) of a physical topic name, or None if it is not one of ours."""
    rest = name.removeprefix(namespace) if namespace else name
    if rest == name and namespace:
        return None
    if not rest.startswith("medins."):
        return None
    region, dot, topic = rest.removeprefix("medins.").partition(".")
    if not dot or not (len(region) == 6 and region.isdigit()) or not topic:
        return None
    return region, topic
