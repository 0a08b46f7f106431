"""The message catalogue: loads, refuses bad templates at start-up, fans out per channel."""
from pathlib import Path

import pytest

from services.notify.app import CATALOGUE
from services.notify.domain.catalogue import Catalogue, CatalogueError, Contact

PID = "210202198001011238"
DATA = {"person_id": PID, "insurance_type": "resident", "from_status": "pending",
        "to_status": "active", "reason": "paid", "effective_on": "2026-01-01",
        "paid_until": "2026-12-31"}


def test_shipped_catalogue_loads_and_renders_chinese_with_masked_id() -> None:
    catalogue = Catalogue.load(CATALOGUE)
    contact = Contact(PID, "王伟", "13800138000", "w@example.cn")
    messages = catalogue.messages_for("cn.medins.enrollment.status.changed.v1", DATA, contact,
                                      "210200")
    by_channel = {m.channel: m for m in messages}
    assert set(by_channel) == {"sms", "email"}
    assert "参保状态为正常" in by_channel["sms"].body and "2026-12-31" in by_channel["sms"].body
    assert "2102**********1238" in by_channel["email"].body
    assert PID not in by_channel["email"].body
    assert "大连市" in by_channel["email"].body


def test_condition_and_preferences() -> None:
    catalogue = Catalogue.load(CATALOGUE)
    terminated = DATA | {"to_status": "terminated"}
    contact = Contact(PID, "王伟", "13800138000", None)
    assert catalogue.messages_for("cn.medins.enrollment.status.changed.v1", terminated,
                                  contact, "210200") == []
    no_email = catalogue.messages_for("cn.medins.enrollment.status.changed.v1", DATA, contact,
                                      "210200")
    assert [m.channel for m in no_email] == ["sms"]
    opted_out = Contact(PID, "王伟", "13800138000", "w@example.cn", sms_opt_in=False)
    assert [m.channel for m in catalogue.messages_for(
        "cn.medins.enrollment.status.changed.v1", DATA, opted_out, "210200")] == ["email"]


def test_unknown_variable_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[[template]]\nkey = "x"\n'
                    'event_type = "cn.medins.enrollment.application.approved.v1"\n'
                    'channels = ["sms"]\nsms = "{no_such_field}"\n', encoding="utf-8")
    with pytest.raises(CatalogueError, match="no_such_field"):
        Catalogue.load(path)


def test_missing_channel_text_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[[template]]\nkey = "x"\n'
                    'event_type = "cn.medins.enrollment.application.approved.v1"\n'
                    'channels = ["email"]\nemail_subject = "s"\n', encoding="utf-8")
    with pytest.raises(CatalogueError, match="no email text"):
        Catalogue.load(path)


def test_death_result_goes_to_the_applicant_by_email_only() -> None:
    catalogue = Catalogue.load(CATALOGUE)
    data = {"application_id": "D-1", "person_id": PID, "approved": True, "reasons": [],
            "applicant_email": "hr@employer.cn"}
    messages = catalogue.messages_for("cn.medins.enrollment.death-cancellation.decided.v1",
                                      data, None, "210200")
    assert [(m.channel, m.recipient) for m in messages] == [("email", "hr@employer.cn")]
    assert "已办结" in messages[0].body and "2102**********1238" in messages[0].body


def test_places_and_diseases_are_named_never_coded() -> None:
    catalogue = Catalogue.load(CATALOGUE)
    contact = Contact(PID, "王伟", "13800138000", "w@example.cn")
    filing = catalogue.messages_for("cn.medins.enrollment.remote-filing.accepted.v1", {
        "filing_id": "F-1", "person_id": PID, "kind": "temporary", "source": "application",
        "treatment_area": "110105", "start_date": "2026-11-24", "end_date": None,
        "benefit_level": "temporary", "chronic_diseases": []}, contact, "210200")
    assert all("北京市朝阳区" in m.body and "110105" not in m.body for m in filing)
    chronic = catalogue.messages_for("cn.medins.enrollment.chronic-disease.recognised.v1", {
        "reference": "CD-1", "person_id": PID, "disease": "organ_transplant_anti_rejection",
        "institution_code": "H1", "effective_from": "2026-11-24", "without_application": True},
        contact, "210200")
    assert all("器官移植抗排异治疗" in m.body and "organ_" not in m.body for m in chronic)
    transfer = catalogue.messages_for("cn.medins.transfer.request.received.v1", {
        "transfer_id": "T-1", "person_id": PID, "from_region": "210200", "to_region": "440300",
        "trigger": "application", "due_on": "2026-12-15"}, contact, "210200")
    assert transfer and all("深圳市" in m.body and "440300" not in m.body for m in transfer)


def _rule_codes() -> set[str]:
    """Every rule code the services refuse a request with (scanned from the source)."""
    import ast

    codes = set()
    for path in (Path(__file__).resolve().parents[2] / "services").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # Enrollment's and transfer's refusals (reimbursement writes its sentences itself:
            # see test_notify_words).
            if (isinstance(node, ast.Call)
                    and getattr(node.func, "id", None) in ("RuleViolation", "TransferRefused")
                    and node.args and isinstance(node.args[0], ast.Constant)):
                codes.add(node.args[0].value)
    return codes


def test_every_rule_code_has_a_chinese_reason_or_is_for_staff_only() -> None:
    from services.notify.domain.reasons import RULE_REASONS, STAFF_ONLY_RULES
    from services.reimbursement import handlers as claims
    from shared.clock import SenderClockError

    codes = _rule_codes() | {SenderClockError.rule} | {
        claims.CLAIM_IN_PROGRESS, claims.MATERIALS_NOT_EXPECTED, claims.UNKNOWN_CLAIM,
        claims.OUT_OF_ORDER, claims.UNKNOWN_PAYMENT, claims.NO_POLICY_RULE}
    assert len(codes) > 30 and {"transfer_open", "same_region"} <= codes
    missing = sorted(c for c in codes if c not in RULE_REASONS and c not in STAFF_ONLY_RULES)
    assert missing == [], f"rule codes without a Chinese reason: {missing}"
    assert all(not any("a" <= ch <= "z" for ch in text) for text in RULE_REASONS.values())


def test_a_refusal_reads_chinese_and_a_staff_error_is_not_texted() -> None:
    catalogue = Catalogue.load(CATALOGUE)
    contact = Contact(PID, "王伟", "13800138000", None)
    refused = catalogue.messages_for("cn.medins.enrollment.request.rejected.v1", {
        "reference": "F-1", "person_id": PID, "rule": "backfill_too_early",
        "reason": "start_date: a long-term filing may start at most 5 days before"}, contact,
        "210200")
    assert [m.body for m in refused] == [
        "【医保服务】您提交的业务（编号F-1）未能办理：长期异地备案的开始日期最早只能追溯到备案前5天。"]
    staff = catalogue.messages_for("cn.medins.enrollment.request.rejected.v1", {
        "reference": "APP-1", "person_id": PID, "rule": "review_not_pending",
        "reason": "application is approved, not awaiting review"}, contact, "210200")
    assert staff == []
