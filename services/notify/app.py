"""Composition root of the notify service: catalogue, SMTP and SMPP senders, dispatcher."""
from __future__ import annotations

from pathlib import Path

from services.notify.dispatcher import Dispatcher
from services.notify.domain.catalogue import Catalogue
from services.notify.handlers import routes
from services.notify.ratelimit import TokenBucket
from services.notify.repository import SEALED, status_of
from services.notify.senders import SmppSmsSender, SmtpEmailSender
from shared.contracts import topics
from shared.db.pool import Database
from shared.messaging.runtime import ServiceSpec
from shared.policy.reference import Reference
from shared.settings import NotifySettings, PlatformSettings

CATALOGUE = Path(__file__).parent / "templates.toml"


def build_dispatcher(db: Database, settings: NotifySettings) -> Dispatcher:
    sms = SmppSmsSender(settings.smpp_host, settings.smpp_port, settings.smpp_system_id,
                        settings.smpp_password, settings.sms_source_addr,
                        submit_timeout=settings.smpp_submit_timeout_seconds,
                        window=settings.smpp_window, sessions=settings.smpp_sessions)
    email = SmtpEmailSender(settings.smtp_host, settings.smtp_port, settings.mail_from,
                            settings.smtp_starttls, settings.smtp_use_tls,
                            settings.smtp_username, settings.smtp_password,
                            max_connections=settings.smtp_max_connections)
    dispatcher = Dispatcher(
        db, settings, {"sms": sms, "email": email},
        {"sms": TokenBucket(settings.sms_rate_per_second),
         "email": TokenBucket(settings.email_rate_per_second)})
    sms.on_receipts = dispatcher.on_receipts
    return dispatcher


def spec() -> ServiceSpec:
    # A bad or missing template, or a wrong reference file, stops the worker here.
    catalogue = Catalogue.load(CATALOGUE, Reference.load(NotifySettings().policy_folders()))

    def make_dispatcher(db: Database, settings: PlatformSettings) -> Dispatcher:
        if not isinstance(settings, NotifySettings):
            raise TypeError("the notify worker needs NotifySettings")
        return build_dispatcher(db, settings)

    return ServiceSpec(
        name="notify",
        routes=routes(catalogue),
        consumes=[topics.ENROLLMENT_EVENTS, topics.TRANSFER_EVENTS, topics.REIMBURSEMENT_EVENTS,
                  topics.NOTIFY_REQUESTS],
        status_query=status_of,
        extras=[make_dispatcher],
        sealed=SEALED,
    )
