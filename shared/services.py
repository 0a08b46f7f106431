"""The registry of services: name to its composition root, imported only when asked for."""
from __future__ import annotations

import importlib

from shared.messaging.runtime import ServiceSpec
from shared.settings import (
    SERVICES,
    EnrollmentSettings,
    NotifySettings,
    PlatformSettings,
    ReimbursementSettings,
    TransferSettings,
)


def load_spec(service: str) -> ServiceSpec:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service}; one of {', '.join(SERVICES)}")
    spec: ServiceSpec = importlib.import_module(f"services.{service}.app").spec()
    return spec


def settings_for(service: str) -> PlatformSettings:
    if service == "notify":
        return NotifySettings()
    if service == "enrollment":
        return EnrollmentSettings()
    if service == "reimbursement":
        return ReimbursementSettings()
    if service == "transfer":
        return TransferSettings()
    return PlatformSettings()
