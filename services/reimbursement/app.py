"""Composition root of the reimbursement service: policy book, topics, handlers, policy watch."""
from __future__ import annotations

from services.reimbursement.handlers import routes
from services.reimbursement.policy_watch import policy_watch
from services.reimbursement.repository import PROACTIVE_CLAIM, SEALED, status_of
from shared.contracts import topics
from shared.messaging.runtime import ServiceSpec
from shared.observability.sampled import SampledGauge
from shared.policy import BookCache
from shared.settings import ReimbursementSettings


def spec() -> ServiceSpec:
    settings = ReimbursementSettings()
    # A wrong policy file stops the start, naming the file and key.
    cache = BookCache(settings.region, settings.policy_folders())
    return ServiceSpec(
        name="reimbursement",
        routes=routes(cache),
        consumes=[*topics.REIMBURSEMENT_INPUTS, topics.ENROLLMENT_EVENTS],
        status_query=status_of,
        extras=[policy_watch(cache)],
        gauges=GAUGES,
        sealed=SEALED,
    )


GAUGES = [
    SampledGauge("medins_reimbursement_claims", "Claims by stage now",
                 "SELECT stage, count(*) AS value FROM claims GROUP BY stage", ("stage",)),
    SampledGauge("medins_reimbursement_payments_failed",
                 "Claims whose bank payment failed after every attempt (staff must act)",
                 "SELECT count(*) AS value FROM claims WHERE stage = 'payment_failed'"),
    # Notice 004 pays every outage record by a set date: alert on those still unpaid as the
    # date nears (due: overdue, within_7_days, later), before it passes, not after.
    SampledGauge("medins_proactive_records_unpaid",
                 "Proactively reimbursed outage records not yet paid, by time to their pay-by "
                 "date",
                 "SELECT CASE WHEN p.pay_by < current_date THEN 'overdue'"
                 " WHEN p.pay_by <= current_date + 7 THEN 'within_7_days' ELSE 'later' END"
                 " AS due, count(*) AS value FROM proactive_records p JOIN claims c"
                 f" ON {PROACTIVE_CLAIM}"
                 " WHERE p.route = 'proactive' AND c.stage <> 'paid' GROUP BY 1", ("due",)),
    SampledGauge("medins_proactive_records_awaiting_declaration",
                 "Outage records uploaded before the agency declared the outage",
                 "SELECT count(*) AS value FROM proactive_records"
                 " WHERE route = 'awaiting_declaration'"),
]
