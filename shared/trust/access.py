"""Who may read a worker's status endpoint: loopback by default, else a bearer token."""
from __future__ import annotations

import hmac
import ipaddress

from shared.settings import PlatformSettings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def status_allowed(settings: PlatformSettings, authorization: str | None) -> bool:
    """With MEDINS_STATUS_TOKEN set, only `Authorization: Bearer <token>` (compared in
    constant time); without one, only a worker bound to loopback answers at all, since then
    only this host's users can reach it."""
    token = settings.status_token.get_secret_value() if settings.status_token else ""
    if token:
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  token.encode())
    return is_loopback(settings.web_host)
