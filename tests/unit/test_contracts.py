"""The envelope, contract validation and the published JSON Schemas."""
import json
from pathlib import Path

import pytest
from cloudevents.v1.http import from_json

from shared.contracts import EVENT_TYPES, ContractError, parse_event, write_json_schemas
from shared.contracts.tax import ContributionPaymentConfirmed
from tests.helpers import envelope

PAYMENT = ContributionPaymentConfirmed(
    payment_ref="TAX-1", person_id="210202198001011238", insurance_type="resident",
    period_start="2026-01-01", period_end="2026-12-31", amount_fen=40000,
    paid_at="2026-03-01T09:00:00+08:00")


def test_round_trip_and_cloudevents_compliance() -> None:
    env = envelope(PAYMENT, source="/gov/tax")
    parsed_env, payload = parse_event(env.to_bytes())
    assert payload == PAYMENT and parsed_env.id == env.id
    # The reference CloudEvents SDK reads our structured-mode JSON as a CloudEvent.
    event = from_json(env.to_bytes())
    assert event["type"] == "cn.gov.tax.contribution.paid.v1"
    assert event["specversion"] == "1.0"
    assert event["regioncode"] == "210200" and event["correlationid"] == env.id


@pytest.mark.parametrize("raw, field", [
    (b"not json", "not JSON"),
    (b"[1]", "JSON object"),
    (b'{"id": "x"}', "source"),
])
def test_malformed_messages(raw: bytes, field: str) -> None:
    with pytest.raises(ContractError, match=field):
        parse_event(raw)


def test_invalid_payload_names_field_and_rule() -> None:
    doc = json.loads(envelope(PAYMENT).to_bytes())
    doc["data"]["person_id"] = "210202198001011239"
    doc["data"]["amount_fen"] = 1.5
    with pytest.raises(ContractError) as err:
        parse_event(doc)
    assert "data.person_id" in err.value.reason
    assert "data.amount_fen" in err.value.reason


def test_period_rule() -> None:
    doc = json.loads(envelope(PAYMENT).to_bytes())
    doc["data"]["period_end"] = "2025-12-31"
    with pytest.raises(ContractError, match="period_end must not be before period_start"):
        parse_event(doc)


def test_unknown_type() -> None:
    doc = json.loads(envelope(PAYMENT).to_bytes())
    doc["type"] = "cn.gov.tax.unknown.v1"
    with pytest.raises(ContractError, match="unknown event type"):
        parse_event(doc)


def test_schemas_written_for_every_type(tmp_path: Path) -> None:
    written = write_json_schemas(tmp_path)
    assert len(written) == len(EVENT_TYPES)
    schema = json.loads((tmp_path / "cn.gov.tax.contribution.paid.v1.json").read_text())
    assert schema["properties"]["type"] == {"const": "cn.gov.tax.contribution.paid.v1"}
    assert "payment_ref" in schema["properties"]["data"]["properties"]
    assert schema["properties"]["data"]["properties"]["amount_fen"]["type"] == "integer"


def test_partner_contract_is_published_with_integer_money() -> None:
    from shared.contracts import json_schemas

    schemas = json_schemas()
    partner = {t: s for t, s in schemas.items() if t.startswith("cn.medins.transfer.partner.")}
    assert set(partner) == {f"cn.medins.transfer.partner.{n}.v1" for n in (
        "transfer-out", "acknowledged", "rejected", "cancelled", "person-enrolled")}
    assert {s["x-topic"] for s in partner.values()} == {"transfer.partner"}
    out = partner["cn.medins.transfer.partner.transfer-out.v1"]["properties"]["data"]
    assert out["properties"]["account_balance_fen"]["type"] == "integer"
    assert out["properties"]["contribution_months"]["type"] == "integer"
    assert {"person_id", "to_region", "due_on", "in_leg_days"} <= set(out["required"])


def test_an_outside_senders_number_is_scoped_by_its_sender() -> None:
    from shared.contracts.common import sender_scoped

    # The same number from two senders is two things; each a valid reference.
    assert sender_scoped("EMG", "H21020003", "A0001") == "EMG-H21020003-A0001"
    assert sender_scoped("EMG", "H21020003", "A0001") != sender_scoped("EMG", "H37010002",
                                                                       "A0001")
    long = sender_scoped("PRO", "H" * 40, "R" * 40)
    assert len(long) <= 64 and long.startswith("PRO-" + "H" * 32 + "-")
    assert long != sender_scoped("PRO", "H" * 40, "R" * 39 + "S")


def test_a_persons_reference_taken_by_another_person_gets_an_id_of_its_own() -> None:
    from shared.contracts.common import own_reference

    first, again = own_reference("TR-7", "event-1"), own_reference("TR-7", "event-1")
    assert first == again and first.startswith("TR-7-") and len(first) == len("TR-7-") + 8
    assert own_reference("TR-7", "event-2") != first
    longest = own_reference("R" * 64, "event-1")
    assert len(longest) == 64 and longest.startswith("R" * 55 + "-")


def test_a_request_takes_its_reference_its_own_id_or_none_by_who_holds_the_reference() -> None:
    from shared.contracts.common import MINE, OTHERS, own_reference, request_id

    assert request_id("CD-1", "event-1", None) == "CD-1"  # free
    assert request_id("CD-1", "event-1", OTHERS) == own_reference("CD-1", "event-1")
    assert request_id("CD-1", "event-1", MINE) is None  # the same person's request again
