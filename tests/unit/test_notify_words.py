"""What a person reads: every template rendered with realistic data, variants, gaps parked."""
from __future__ import annotations

import random
import re
import typing
from datetime import date
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from services.notify.app import CATALOGUE
from services.notify.domain.catalogue import (
    NOT_SENT,
    Catalogue,
    CatalogueError,
    Condition,
    Contact,
    Template,
    _placeholders,
    references_in,
)
from shared.contracts import EVENT_TYPES
from shared.devstack import people
from shared.policy import PolicyError
from shared.policy.reference import Reference

RNG = random.Random(11)
PERSON = people.resident_id("210200", rng=RNG)
RELATIVE = people.resident_id("210200", rng=RNG)
CONTACT = Contact(PERSON, "王秀英", "13912345678", "wang@example.cn")
REGION = "210200"
DAY = "2026-12-07"
REF = Reference.load()
# Realistic values by field name, as the services send them; a field of a person-facing
# event with neither a value here nor a plain type below fails the test (add it here).
SAMPLE: dict[str, Any] = {
    "person_id": PERSON, "relative_id": RELATIVE,
    "application_id": "APP-2026-000123", "claim_id": "CLM-20261207-0042",
    "filing_id": "F-2026-0815", "transfer_id": "TR-2026-0007", "request_id": "STOP-2026-0031",
    "authorisation_id": "FA-2026-0009", "reference": "CD-2026-0100",
    "settlement_id": "SET-2026-0555",
    "insurance_type": "resident", "channel": "wechat", "relationship": "parent",
    "reasons": ["身份证照片不清晰，请重新上传"], "disease": "diabetes",
    "institution_code": "H21020001", "without_application": False, "prescription_months": 3,
    "approved": False, "applicant_email": "hr@example.cn",
    "reason": "本人申请终止", "employer_code": "91210200MA0QC1234F",
    "kind": "temporary", "source": "application", "treatment_area": "110105",
    "benefit_level": "temporary", "chronic_diseases": [], "rule": "backfill_too_early",
    "from_status": "pending", "to_status": "active", "version": 1, "payable_fen": 540_000,
    "policy_version": "2026.1", "overrides": [],
    "working": ["policy 210200/2026.1 in force on 2026-11-20, rule resident level 3 in_region"],
    "benefit_line": "medical", "proactive": False, "eligible_fen": 1_000_000,
    "deductible_fen": 100_000, "ratio": "0.60", "cap_remaining_fen": 19_000_000,
    "mail_to": REF.agencies[REGION].mailing_address,
    "materials": ["发票原件", "费用明细清单", "出院小结"], "amount_fen": 1_200_000,
    "stage": "preliminary_review", "attempts": 3, "cost_fen": 2_345_600,
    "override": "example-001-epidemic-full-coverage", "from_region": "210200",
    "to_region": "370100", "contribution_months": 60, "account_balance_fen": 345_678,
    "trigger": "application", "due_provisional": False, "deadline_provisional": False,
}
# Per event where one field means something else there.
SAMPLE_FOR = {
    "cn.medins.transfer.failed.v1": {
        "reason": "济南市未查到您的正常参保记录（当前未参保），请先在济南市参保缴费后再办理转移"},
    "cn.medins.transfer.request.rejected.v1": {
        "reason": "您已有一笔正在办理的医保关系转移", "rule": "transfer_open"},
    "cn.medins.enrollment.status.changed.v1": {"reason": "本人申请停止缴费"},
    "cn.medins.enrollment.remote-filing.ended.v1": {"reason": "您已停保，备案随之终止"},
}
# Latin letters are allowed only inside a reference the person quotes back (编号): anything
# else (an English word, a field name, a code such as H21020001 or temporary) is rule text.
LATIN = re.compile(r"[A-Za-z]")
# What an empty value leaves behind in a sentence.
GAP = re.compile(r"（）|：[。，；]|至[。，]|在[。，]|为[。，]|\{|\}")


def _value(name: str, annotation: Any) -> Any:
    if name in SAMPLE:
        return SAMPLE[name]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is date or date in args:
        return DAY
    if origin is typing.Literal:
        return args[0]
    raise AssertionError(f"no realistic sample for field {name} ({annotation})")


def sample(event_type: str, t: Template | None = None,
           catalogue: Catalogue | None = None) -> dict[str, Any]:
    """A payload the contract accepts, meeting the template's conditions; with the catalogue,
    one for which this template is the one chosen (the fewest changes that fail every more
    specific sibling)."""
    model = EVENT_TYPES[event_type]
    data = {name: _value(name, f.annotation) for name, f in model.model_fields.items()}
    data |= {k: v for k, v in SAMPLE_FOR.get(event_type, {}).items() if k in data}
    for c in t.when if t else ():
        data[c.field] = _choose(c, model.model_fields[c.field].annotation, data[c.field], True)
    if t is None or catalogue is None:
        return model.model_validate(data).model_dump(mode="json")
    own = {c.field for c in t.when}
    changes = [(c.field, v) for s in catalogue.templates if s.event_type == event_type
               and len(s.when) > len(t.when) for c in s.when if c.field not in own
               for v in _failing(c, model.model_fields[c.field].annotation)]
    for tried in [(), *((x,) for x in changes), *combinations(changes, 2)]:
        candidate = data | dict(tried)
        try:
            valid = model.model_validate(candidate).model_dump(mode="json")
        except ValueError:
            continue
        if catalogue.template_for(event_type, valid) is t:
            return valid
    raise AssertionError(f"{t.key}: no payload chooses it")


def _choose(c: Condition, annotation: Any, current: Any, meet: bool) -> Any:
    """A value for the condition's field that meets it (or fails it)."""
    options = [current, None, True, False,
               *(a for a in typing.get_args(annotation) if isinstance(a, str)),
               *(a for a in sorted(c.values) if a)]
    return next(o for o in options if c.accepts({c.field: o}) == meet)


def _failing(c: Condition, annotation: Any) -> list[Any]:
    options = [None, True, False, *(a for a in typing.get_args(annotation) if isinstance(a, str))]
    return [o for o in options if not c.accepts({c.field: o})]


def test_every_template_renders_with_realistic_data_in_chinese_and_complete() -> None:
    catalogue = Catalogue.load(CATALOGUE)
    seen = set()
    for t in catalogue.templates:
        data = sample(t.event_type, t, catalogue)
        assert catalogue.template_for(t.event_type, data) is t, f"{t.key} never chosen"
        messages = catalogue.messages_for(t.event_type, data, CONTACT, REGION)
        assert {m.channel for m in messages} == set(t.channels), t.key
        names = set().union(*(_placeholders(x) for x in t.texts()))
        quoted = references_in(catalogue.variables(data, CONTACT, REGION), names)
        for m in messages:
            assert m.problem is None, f"{t.key}: {m.problem}"
            text = f"{m.subject or ''}\n{m.body}"
            for ref in quoted:
                text = text.replace(ref, "")
            assert not LATIN.findall(text), f"{t.key} ({m.channel}) reads Latin: {text}"
            assert not GAP.search(text), f"{t.key} ({m.channel}) has a gap: {text}"
        seen.add(t.key)
    assert len(seen) == len(catalogue.templates) >= 36


def test_the_maternity_allowance_is_an_allowance_never_a_reimbursement() -> None:
    catalogue = Catalogue.load(CATALOGUE)
    event = "cn.medins.reimbursement.claim.approved.v1"
    for line, word in (("maternity_allowance", "生育津贴"), ("maternity_medical", "生育医疗费用"),
                       ("medical", "报销申请")):
        data = sample(event) | {"benefit_line": line, "claim_id": "MAT-B1"}
        [sms, mail] = catalogue.messages_for(event, data, CONTACT, REGION)
        assert word in sms.body and word in mail.body
        if line == "maternity_allowance":
            assert "报销" not in sms.body + mail.body + (mail.subject or "")
    paid = catalogue.messages_for("cn.medins.reimbursement.claim.paid.v1", sample(
        "cn.medins.reimbursement.claim.paid.v1") | {"benefit_line": "maternity_allowance"},
        CONTACT, REGION)
    assert all("生育津贴" in m.body and "报销" not in m.body for m in paid)
    failed = "cn.medins.reimbursement.claim.payment-failed.v1"
    unpaid = catalogue.messages_for(failed, sample(failed) | {
        "benefit_line": "maternity_allowance"}, CONTACT, REGION)
    assert {m.channel for m in unpaid} == {"sms", "email"}
    assert all("生育津贴" in f"{m.subject or ''}{m.body}" and "报销" not in
               f"{m.subject or ''}{m.body}" for m in unpaid)


def test_a_proactive_claim_names_the_hospital_and_asks_for_nothing() -> None:
    catalogue = Catalogue.load(CATALOGUE)
    event = "cn.medins.reimbursement.claim.approved.v1"
    data = sample(event) | {"proactive": True, "institution_code": "H21020003",
                            "claim_id": "PRO-H21020003-0001"}
    [sms, _] = catalogue.messages_for(event, data, CONTACT, REGION)
    assert sms.template == "reimbursement.proactive.approved"
    assert "大连医科大学附属第一医院" in sms.body and "主动" in sms.body
    assert "H21020003" not in sms.body.replace("PRO-H21020003-0001", "")
    # Not known to the reference data: parked for an operator, never shown as a code.
    [unknown, _] = catalogue.messages_for(event, data | {"institution_code": "H99"}, CONTACT,
                                          REGION)
    assert unknown.problem and "institution_name" in unknown.problem


def test_a_roster_employee_is_not_told_an_empty_paid_until_date() -> None:
    catalogue = Catalogue.load(CATALOGUE)
    event = "cn.medins.enrollment.status.changed.v1"
    roster = sample(event) | {"insurance_type": "employee", "paid_until": None}
    [sms, mail] = catalogue.messages_for(event, roster, CONTACT, REGION)
    assert sms.template == "enrollment.activated.employer" and sms.problem is None
    assert "有效期至" not in sms.body and "单位" in sms.body and DAY in sms.body
    # Anyone else without the date: not sent with a blank, parked with the variable named.
    resident = sample(event) | {"insurance_type": "resident", "paid_until": None}
    held = catalogue.messages_for(event, resident, CONTACT, REGION)
    assert held and all(m.problem and m.problem.startswith(NOT_SENT) and "paid_until"
                        in m.problem for m in held)


@pytest.mark.parametrize(("field", "value", "variable"), [
    ("reason", "insured status changed to terminated", "reason"),
    ("reason", "start_date: too early", "reason"),
    ("reason", "", "reason"),
])
def test_rule_text_and_empty_values_are_parked_with_the_reason(field: str, value: str,
                                                                variable: str) -> None:
    catalogue = Catalogue.load(CATALOGUE)
    event = "cn.medins.enrollment.remote-filing.ended.v1"
    [m] = catalogue.messages_for(event, sample(event) | {field: value}, CONTACT, REGION)
    assert m.problem is not None and variable in m.problem and m.problem.startswith(NOT_SENT)


def test_capital_abbreviations_in_a_reason_are_chinese_usage_not_rule_text() -> None:
    catalogue = Catalogue.load(CATALOGUE)
    event = "cn.medins.reimbursement.claim.rejected.v1"
    [sms, _] = catalogue.messages_for(event, sample(event) | {
        "reasons": ["CT检查费用不在报销范围内"]}, CONTACT, REGION)
    assert sms.problem is None


def test_the_originals_go_to_a_postal_address() -> None:
    catalogue = Catalogue.load(CATALOGUE)
    event = "cn.medins.reimbursement.claim.preliminary-approved.v1"
    [sms, _] = catalogue.messages_for(event, sample(event), CONTACT, REGION)
    assert "116001 辽宁省大连市" in sms.body and sms.problem is None
    [window, _] = catalogue.messages_for(event, sample(event) | {
        "mail_to": "医疗保障事务服务中心手工报销窗口"}, CONTACT, REGION)
    assert window.problem and "mail_to_address" in window.problem


def _write(tmp_path: Path, body: str) -> Path:
    shipped = CATALOGUE.read_text(encoding="utf-8")
    path = tmp_path / "t.toml"
    path.write_text(shipped + body, encoding="utf-8")
    return path


def test_conditions_choose_the_most_specific_and_refuse_a_guess(tmp_path: Path) -> None:
    ambiguous = _write(tmp_path, '''
[[template]]
key = "x.maternity"
event_type = "cn.medins.reimbursement.claim.paid.v1"
when = { proactive = true }
channels = ["sms"]
sms = "{claim_id}"
''')
    with pytest.raises(CatalogueError, match="could match both"):
        Catalogue.load(ambiguous)
    bad = _write(tmp_path, '''
[[template]]
key = "x.bad"
event_type = "cn.medins.reimbursement.claim.paid.v1"
when = { benefit_line = { like = "m%" }, proactive = true, claim_id = "x" }
channels = ["sms"]
sms = "{claim_id}"
''')
    with pytest.raises(CatalogueError, match="unknown operator"):
        Catalogue.load(bad)
    ops = {"a": Condition.parse("f", {"in": ["x", "y"]}, ""),
           "b": Condition.parse("f", {"not_in": ["x", "y", "z"]}, ""),
           "c": Condition.parse("f", {"ne": "x"}, ""),
           "d": Condition.parse("f", {"present": False}, "")}
    assert ops["a"].excludes(ops["b"]) and not ops["a"].excludes(ops["c"])
    assert ops["d"].excludes(ops["a"]) and not ops["b"].excludes(ops["c"])
    assert ops["d"].accepts({"f": None}) and ops["d"].accepts({}) and not ops["d"].accepts(
        {"f": "x"})


def test_reference_data_names_institutions_and_refuses_a_wrong_file(tmp_path: Path) -> None:
    assert REF.institution_name("H21020001") == "大连市中心医院"
    assert REF.institution_name("H1") is None
    assert REF.agencies["370100"].mailing_address.startswith("250001 山东省济南市")
    (tmp_path / "reference").mkdir()
    wrong = tmp_path / "reference" / "999999.toml"
    wrong.write_text('region = "210200"\n[agency]\nname = "x"\npostcode = "1160"\n'
                     'postal_address = "a"\nrecipient = "b"\n', encoding="utf-8")
    with pytest.raises(PolicyError, match="postcode"):
        Reference.load([tmp_path])
    wrong.write_text('region = "210200"\n[[institution]]\ncode = "H21020001"\nname = "x"\n',
                     encoding="utf-8")
    with pytest.raises(PolicyError, match="listed twice"):
        Reference.load([tmp_path, tmp_path])


def test_a_refused_claim_reads_its_reasons_without_the_staff_field_names() -> None:
    from services.reimbursement.domain import claims

    staff = [
        *claims.intake_reasons(coverage=None, expense_date=date(2026, 2, 1),
                               filed_on=date(2026, 11, 24), deadline=None,
                               earlier_claim_for_receipt="CLM-1", settled_as="SET-9"),
        *claims.intake_reasons(coverage=None, expense_date=date(2026, 12, 1),
                               filed_on=date(2026, 11, 24), deadline=None,
                               earlier_claim_for_receipt=None),
        claims.late_reason(date(2026, 11, 23)),
        claims.future_timestamp_reason("submitted_at", "2026-12-22T02:00:00+00:00",
                                       "2026-12-06T13:54:01+00:00"),
    ]
    assert len(staff) == 6 and all(re.search(r"[a-z]_[a-z]", r) for r in staff)
    person = claims.for_person(staff)
    for text in person:
        assert not LATIN.findall(text.replace("CLM-1", "").replace("SET-9", "")), text
    assert "2026-02-01" in person[0] and "2026-12-22 10:00" in person[-1]
