"""Notify handlers: keep contact data, and claim one delivery row per message to send."""
from __future__ import annotations

from services.notify import metrics
from services.notify import repository as repo
from services.notify.domain.catalogue import Catalogue, Message
from shared.contracts import Envelope
from shared.contracts.channels import NotificationPreferencesSet
from shared.contracts.enrollment import ContactRecorded
from shared.contracts.notify import MessageParked
from shared.messaging.consumer import BatchItem, Handler, HandlerContext, batch_handler
from shared.observability.logging import get_logger

log = get_logger(__name__)


async def _claim(ctx: HandlerContext, source_event_id: str, person_id: str,
                 messages: list[Message]) -> None:
    _parked(ctx, source_event_id, person_id,
            await repo.claim_deliveries(ctx.conn, source_event_id, person_id, messages))


async def on_preferences_set(ctx: HandlerContext, env: Envelope,
                             event: NotificationPreferencesSet) -> None:
    await repo.set_preferences(ctx.conn, event.person_id, event.sms, event.email)


def _parked(ctx: HandlerContext, source_event_id: str, person_id: str,
            parked: list[Message]) -> None:
    for m in parked:
        metrics.NOT_SENT.labels(m.template).inc()
        log.warning("message parked before sending", template=m.template, channel=m.channel,
                    person_id=person_id, problem=m.problem)
        ctx.emit(MessageParked(source_event_id=source_event_id, channel=m.channel,  # type: ignore[arg-type]
                               template=m.template, reason=m.problem or ""), key=person_id)


def routes(catalogue: Catalogue) -> dict[str, Handler]:
    @batch_handler
    async def on_person_events(items: list[BatchItem]) -> None:
        """Every person event of a batch at once: contacts loaded in one query per table,
        the messages decided in order, claimed in one statement. A contact recorded in the
        same batch comes in its own group before the events after it (per-key order)."""
        found = [(ctx, env, data, data["person_id"]) for ctx, env, data in (
            (ctx, env, event.model_dump(mode="json")) for ctx, env, event in items)
            if data.get("person_id")]
        if not found:
            return
        conn = found[0][0].conn
        contacts = await repo.load_contacts(conn, {pid for *_, pid in found})
        claims = []
        for _ctx, env, data, person_id in found:
            contact = contacts.get(person_id)
            if contact is None and catalogue.needs_contact(env.type):
                # Topics are not ordered with each other: the contact may still be on its way.
                await repo.wait_for_contact(conn, env.id, person_id, env.type, env.regioncode,
                                            data)
            claims.append((env.id, person_id,
                           catalogue.messages_for(env.type, data, contact, env.regioncode)))
        parked = await repo.claim_all_deliveries(conn, claims)
        for (ctx, env, _, person_id), newly in zip(found, parked, strict=True):
            _parked(ctx, env.id, person_id, newly)

    @batch_handler
    async def on_contacts_recorded(items: list[BatchItem]) -> None:
        """A batch's contact data kept in one statement per table (a person's latest wins,
        as one by one); messages that waited for a person's contact are claimed now."""
        conn = items[0][0].conn
        latest = {event.person_id: (ctx, event) for ctx, _, event in items}
        await repo.upsert_contacts(conn, [(e.person_id, e.name, e.mobile, e.email)
                                          for _, e in latest.values()])
        waiting = await repo.waiting_for_contacts(conn, set(latest))
        if not waiting:
            return
        contacts = await repo.load_contacts(conn, set(waiting))
        for person_id, rows in waiting.items():
            ctx = latest[person_id][0]
            for row in rows:
                messages = catalogue.messages_for(row["event_type"], row["data"],
                                                  contacts.get(person_id), row["region"])
                await _claim(ctx, row["source_event_id"], person_id, messages)
                await repo.contact_arrived(conn, row["id"])

    table: dict[str, Handler] = {t: on_person_events for t in catalogue.event_types()}
    table[ContactRecorded.event_type] = on_contacts_recorded
    table[NotificationPreferencesSet.event_type] = on_preferences_set
    return table
