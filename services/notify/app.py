"""Composition root of the notify service: catalogue, senders, consumer and dispatcher."""
from __future__ import annotations

from pathlib import Path

from shared.contracts import topics
from shared.db.pool import Database
from shared.messaging.runtime import ServiceSpec
from shared.settings import NotifySettings, PlatformSettings
from services.notify.dispatcher import Dispatcher
from services.notify.domain.catalogue import Catalogue
from services.notify.handlers import routes
from services.notify.repository import status_of
from services.notify.senders import FileSmsGateway, SmtpEmailSender

CATALOGUE = Path(__file__).parent / "templates.toml"


def spec() -> ServiceSpec:
    catalogue = Catalogue.load(CATALOGUE)  # a bad template stops the worker here

    def make_dispatcher(db: Database, settings: PlatformSettings) -> Dispatcher:
        if not isinstance(settings, NotifySettings):
            raise TypeError("the notify worker needs NotifySettings")
        notify_settings = settings
        senders = {
            "email": SmtpEmailSender(
                notify_settings.smtp_host, notify_settings.smtp_port, notify_settings.mail_from,
                notify_settings.smtp_starttls, notify_settings.smtp_use_tls,
                notify_settings.smtp_username, notify_settings.smtp_password),
            "sms": FileSmsGateway(notify_settings.sms_outbox_dir),
        }
        return Dispatcher(db, notify_settings, senders)

    return ServiceSpec(
        name="notify",
        routes=routes(catalogue),
        consumes=[topics.ENROLLMENT_EVENTS, topics.TRANSFER_EVENTS, topics.REIMBURSEMENT_EVENTS],
        status_query=status_of,
        extras=[make_dispatcher],
    )
