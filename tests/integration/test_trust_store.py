"""The trust store, the authorisation table and the status gate, without a broker."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.contracts import EVENT_TYPES
from shared.settings import PlatformSettings
from shared.trust import (
    Authorisation,
    Keyring,
    Refused,
    TrustStore,
    create_key,
    ensure_simulated_keys,
    sign_headers,
)
from shared.trust.access import status_allowed

REGIONS = ("210200", "370100")


def test_every_event_type_has_exactly_one_kind_of_producer() -> None:
    table = Authorisation.load()
    for event_type in EVENT_TYPES:
        assert len(table.producers_for(event_type, "210200")) == 1, event_type


@pytest.mark.parametrize(("producer", "event_type", "allowed"), [
    ("tax", "cn.gov.tax.contribution.paid.v1", True),
    ("tax", "cn.gov.civil-affairs.death.recorded.v1", False),
    ("civil-affairs", "cn.gov.civil-affairs.death.recorded.v1", True),
    ("civil-affairs", "cn.gov.tax.contribution.paid.v1", False),
    ("bank", "cn.bank.payment.result.v1", True),
    ("bank", "cn.medins.review.claim.decided.v1", False),
    ("channels", "cn.medins.review.enrollment.decided.v1", False),
    ("hospital", "cn.gov.hospital.treatment.recorded.v1", True),
    ("employer-gateway", "cn.medins.employer.roster.submitted.v1", True),
    ("employer-gateway", "cn.gov.civil-affairs.death.recorded.v1", False),
    ("transfer-office", "cn.medins.transfer-office.funds.received.v1", True),
    ("region-210200", "cn.gov.tax.contribution.paid.v1", False),
    ("nobody", "cn.gov.tax.contribution.paid.v1", False),
])
def test_the_table_says_who_sends_what(producer: str, event_type: str, allowed: bool) -> None:
    table = Authorisation.load()
    data = {"reviewer": "s1"}
    if allowed:
        table.check(producer, event_type, "210200", data, "210200")
    else:
        with pytest.raises(Refused) as refused:
            table.check(producer, event_type, "210200", data, "210200")
        assert refused.value.kind == "forbidden"


def test_a_partner_speaks_only_for_itself_and_only_as_the_sending_end() -> None:
    table = Authorisation.load()
    ack = "cn.medins.transfer.partner.acknowledged.v1"
    table.check("region-370100", ack, "370100", {"to_region": "370100"}, "210200")
    for regioncode, data in (("371000", {"to_region": "371000"}),   # another's code
                             ("370100", {"to_region": "371000"})):  # another's answer
        with pytest.raises(Refused, match="forbidden"):
            table.check("region-370100", ack, regioncode, data, "210200")
    # Internal events: only the consuming region's own key, with its own code.
    table.check("region-210200", "cn.medins.transfer.completed.v1", "210200", {}, "210200")
    with pytest.raises(Refused, match="not for region"):
        table.check("region-370100", "cn.medins.transfer.completed.v1", "370100", {}, "210200")


def test_a_staff_decision_must_name_the_member_of_staff() -> None:
    with pytest.raises(Refused, match="staff"):
        Authorisation.load().check("review-desk", "cn.medins.review.claim.decided.v1",
                                   "210200", {"reviewer": " "}, "210200")


def test_rotation_revocation_and_key_files(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trust", reload_seconds=0)
    ensure_simulated_keys(tmp_path / "trust", tmp_path / "keys", REGIONS)
    old = Keyring(tmp_path / "keys").current("tax")
    assert old is not None
    new, path = create_key("tax", tmp_path / "keys", store)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    value = b'{"exact": "bytes"}'
    # Both keys are valid during the rotation...
    assert store.verify(value, sign_headers(value, old)) == "tax"
    assert store.verify(value, sign_headers(value, new)) == "tax"
    # ... until the old one is revoked; the keyring then signs with the new one.
    store.revoke(old.name, "rotated")
    with pytest.raises(Refused, match="revoked"):
        store.verify(value, sign_headers(value, old))
    assert Keyring(tmp_path / "keys").current("tax", store.revoked).name == new.name  # type: ignore[union-attr]
    with pytest.raises(Refused, match="does not match"):
        store.verify(value + b" ", sign_headers(value, new))
    with pytest.raises(Refused, match="not signed"):
        store.verify(value, [])
    with pytest.raises(Refused, match="malformed"):
        store.verify(value, [("ce_signingkey", b"tax/\x00"), ("ce_signature", b"AAAA")])
    with pytest.raises(ValueError):
        create_key("../etc", tmp_path / "keys", store)


def test_status_answers_loopback_only_or_with_the_token() -> None:
    assert status_allowed(PlatformSettings(web_host="127.0.0.1"), None)
    assert not status_allowed(PlatformSettings(web_host="0.0.0.0"), None)
    guarded = PlatformSettings(web_host="0.0.0.0", status_token="s3cret-token")
    assert not status_allowed(guarded, None)
    assert not status_allowed(guarded, "Bearer wrong")
    assert status_allowed(guarded, "Bearer s3cret-token")


def test_compose_kafka_has_sasl_tls_and_an_acl_principal_per_producer() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    brokers = [s for n, s in compose["services"].items() if n.startswith("kafka-")]
    assert "broker-acls" in compose["services"]
    for broker in brokers:
        env = broker["environment"]
        protocols = {v.split(":")[1] for v in
                     env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
        assert protocols <= {"SSL", "SASL_SSL"}, protocols
        assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    worker = compose["services"]["enrollment"]["environment"]
    assert worker["MEDINS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert worker["MEDINS_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    script = (root / "deploy/kafka/acls.sh").read_text()
    for producer in Authorisation.load().grants:
        if not producer.endswith("*"):
            assert 'user "$who"' in script and producer in script, producer


def test_clients_take_tls_and_scram_from_the_settings() -> None:
    from shared.messaging.admin import faust_credentials, kafka_client_options

    plain = PlatformSettings()
    assert kafka_client_options(plain) == {} and faust_credentials(plain) == {}
    secure = PlatformSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="tax",
                              kafka_sasl_password="pw")
    options = kafka_client_options(secure)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "tax" and options["ssl_context"] is not None
    credentials = faust_credentials(secure)["broker_credentials"]
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    with pytest.raises(ValueError, match="SASL needs"):
        kafka_client_options(PlatformSettings(kafka_security_protocol="SASL_SSL"))
