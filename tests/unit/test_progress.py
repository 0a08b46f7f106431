"""The progress view's mapping: every kind of row becomes an item with a Chinese stage and step."""
from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime

from services.notify.domain.reasons import RULE_REASONS
from shared.progress import (
    KIND_NAMES,
    STAGES,
    build_items,
    person_view,
    render_text,
    staff_view,
)

PERSON = "210203199001011234"
TODAY = date(2026, 12, 6)
AT = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


def _found() -> dict[str, dict[str, list[dict[str, object]]]]:
    return {
        "enrollment": {
            "applications": [
                {"application_id": "APP-1", "insurance_type": "resident", "state": "approved",
                 "reasons": [], "created_at": AT, "updated_at": LATER},
                {"application_id": "APP-0", "insurance_type": "resident", "state": "rejected",
                 "reasons": ["材料不全"], "created_at": AT, "updated_at": AT}],
            "cases": [
                {"case_id": "CH-1", "kind": "chronic_recognition", "state": "submitted",
                 "reasons": [], "review_from": None, "created_at": AT, "updated_at": AT},
                {"case_id": "CH-2", "kind": "chronic_recognition", "state": "submitted",
                 "reasons": [], "review_from": "2027-01-04", "created_at": AT,
                 "updated_at": AT},
                {"case_id": "D-1", "kind": "death_cancellation", "state": "rejected",
                 "reasons": ["死亡证明与户籍信息不符"], "created_at": AT, "updated_at": LATER},
                {"case_id": "CS-1", "kind": "civil_servant_benefit", "state": "approved",
                 "reasons": [], "review_from": None, "created_at": AT, "updated_at": LATER}],
            "filings": [
                {"filing_id": "F-1", "category": "remote", "kind": "temporary",
                 "source": "application", "start_date": date(2026, 12, 1),
                 "end_date": date(2027, 5, 29), "state": "active", "created_at": AT,
                 "updated_at": AT},
                {"filing_id": "EMG-9", "category": "remote", "kind": "temporary",
                 "source": "emergency_admission", "start_date": date(2026, 11, 1),
                 "end_date": None, "state": "ended", "created_at": AT,
                 "updated_at": LATER},
                {"filing_id": "ACC-1", "category": "accident", "kind": "inpatient",
                 "source": "application", "start_date": date(2026, 12, 1), "end_date": None,
                 "state": "accepted", "created_at": AT,
                 "updated_at": AT}],
            "family_aid": [{"authorisation_id": "FA-1", "granted": True, "state": "active",
                            "created_at": AT, "updated_at": AT}],
            "awaiting_policy": [
                {"reference": "CH-9", "event_type": "cn.medins.channels.chronic-disease."
                 "applied.v1", "fact_date": date(2027, 3, 1), "received_at": AT,
                 "waiting_since": AT, "resumed_at": None}],
            "history": [
                {"reference": "STOP-1", "what": "stop requested",
                 "detail": {"suspended_from": "2027-01-01"}, "cause_type": "x",
                 "recorded_at": AT},
            ],
            "refused": [
                {"reference": "F-EARLY", "rule": "backfill_too_early",
                 "reason": "start_date: a long-term filing may start at most 5 days before "
                           "the filing day",
                 "request_type": "cn.medins.channels.remote-filing.applied.v1",
                 "refused_at": LATER},
                {"reference": "APP-1", "rule": "duplicate_application", "reason": "already used",
                 "request_type": "cn.medins.channels.enrollment.submitted.v1",
                 "refused_at": LATER},
                {"reference": "R-7", "rule": "invalid_row", "reason": "row 3: bad id",
                 "request_type": "cn.medins.employer.roster.submitted.v1", "refused_at": AT}],
        },
        "reimbursement": {
            "claims": [
                {"claim_id": "C-1", "benefit_line": "medical", "stage": "materials_pending",
                 "reasons": [], "channel": "wechat", "payee": "insured",
                 "filed_on": date(2026, 12, 2), "created_at": AT, "updated_at": LATER,
                 "pay_by": None},
                {"claim_id": "C-0", "benefit_line": "medical", "stage": "rejected",
                 "reasons": ["expense_date: claims must be filed within one year"],
                 "channel": "wechat", "payee": "insured", "filed_on": date(2026, 12, 1),
                 "created_at": AT, "updated_at": AT, "pay_by": None},
                {"claim_id": "P-1", "benefit_line": "medical", "stage": "approved",
                 "reasons": [], "channel": None, "payee": "insured", "filed_on": None,
                 "created_at": AT, "updated_at": AT, "pay_by": date(2026, 12, 20)},
                {"claim_id": "EPI-1", "benefit_line": "epidemic", "stage": "paid",
                 "reasons": [], "channel": None, "payee": "institution", "filed_on": None,
                 "created_at": AT, "updated_at": AT, "pay_by": None},
                {"claim_id": "EPI-2", "benefit_line": "epidemic", "stage": "payment_failed",
                 "reasons": [], "channel": None, "payee": "institution", "filed_on": None,
                 "created_at": AT, "updated_at": LATER, "pay_by": None}],
            "births": [{"birth_id": "B-1", "state": "waiting_for_wage_base",
                        "reason": "waiting for 9121's 2025 wage base",
                        "birth_date": date(2026, 11, 20)}],
            "refused": [
                {"reference": "C-1", "rule": "claim_in_progress",
                 "reason": "claim is materials_pending; only a rejected claim can be "
                           "resubmitted",
                 "request_type": "cn.medins.channels.claim.submitted.v1", "refused_at": LATER},
                {"reference": "C-404", "rule": "unknown_claim",
                 "reason": "claim_id: no such claim",
                 "request_type": "cn.medins.review.claim.decided.v1", "refused_at": LATER}],
        },
        "transfer": {
            "transfers": [
                {"transfer_id": "T-1", "direction": "out", "from_region": "210200",
                 "to_region": "370100", "stage": "sent", "trigger": "application",
                 "mode": "electronic", "reason": None, "started_on": date(2026, 12, 1),
                 "due_on": date(2026, 12, 29), "completed_on": None, "paused_since": None,
                 "created_at": AT, "updated_at": LATER}],
        },
    }


def _by_ref(view: dict[str, object]) -> dict[str, dict[str, object]]:
    return {i["reference"]: i for i in view["items"]}  # type: ignore[attr-defined, index]


def test_every_kind_of_row_becomes_an_item_with_a_chinese_stage_and_next_step() -> None:
    view = person_view(PERSON, build_items(_found(), TODAY))
    items = _by_ref(view)
    assert items["APP-1"]["kind"] == "参保登记申请"
    assert items["APP-1"]["next_step"] == "请按税务机关通知缴费，缴费后参保生效"
    assert items["CH-1"]["kind"] == "门诊慢特病认定" and items["CH-1"]["stage"] == "待审核"
    assert items["CH-1"]["next_step"] == "等待审核，无需操作"
    assert items["D-1"]["kind"] == "死亡注销"
    assert items["D-1"]["reasons"] == ["死亡证明与户籍信息不符"]
    assert items["CS-1"]["kind"] == "公务员医疗补助"
    assert items["CS-1"]["next_step"] == "无需操作，办结"
    assert items["F-1"]["kind"] == "异地就医备案" and items["F-1"]["detail"] == "临时外出就医"
    assert items["F-1"]["due"] == "2027-05-29" and "2027年5月29日" in items["F-1"]["next_step"]
    assert items["EMG-9"]["detail"] == "急诊入院" and items["EMG-9"]["stage"] == "已终止"
    assert items["ACC-1"]["kind"] == "意外伤害住院备案" and items["ACC-1"]["stage"] == "已备案"
    assert items["FA-1"]["kind"] == "家庭共济授权"
    assert items["CH-9"]["stage"] == "等待政策发布"
    assert items["STOP-1"]["kind"] == "停保申请" and "2027年1月1日" in items["STOP-1"]["next_step"]
    assert items["C-1"]["kind"] == "报销申请" and "邮寄" in items["C-1"]["next_step"]
    assert items["P-1"]["detail"].startswith("经办机构主动办理")
    assert items["P-1"]["due"] == "2026-12-20"
    assert items["EPI-1"]["kind"] == "疫情专项医疗保障"
    assert items["EPI-1"]["stage"] == "已支付给医疗机构"
    # A failed payment to the hospital asks nothing of the patient (no bank card to check).
    assert items["EPI-2"]["next_step"] == "无需本人操作" and "reasons" not in items["EPI-2"]
    assert "银行" not in items["EPI-2"]["stage"] + items["EPI-2"]["next_step"]
    assert items["B-1"]["kind"] == "生育津贴" and items["B-1"]["stage"] == "待核定"
    assert items["T-1"]["kind"] == "转移接续（转出）" and items["T-1"]["due"] == "2026-12-29"
    assert items["T-1"]["detail"] == "转往济南市"


def test_a_refused_request_reads_its_rule_in_chinese_and_staff_refusals_stay_with_staff() -> None:
    items = build_items(_found(), TODAY)
    person = _by_ref(person_view(PERSON, items))
    refused = person["F-EARLY"]
    assert refused["kind"] == "被拒绝的请求" and refused["detail"] == "异地就医备案申请"
    assert refused["stage"] == "未受理"
    assert refused["reasons"] == [RULE_REASONS["backfill_too_early"]]
    assert "R-7" not in person  # a roster row's refusal answered the employer
    staff = _by_ref(staff_view(PERSON, items))
    assert staff["R-7"]["rule"] == "invalid_row" and staff["R-7"]["staff_only"] is True
    # A refusal about an application already listed is noted on it, not listed twice.
    assert staff["APP-1"]["refusals"] == ["duplicate_application"]
    assert sum(i["reference"] == "APP-1" for i in staff_view(PERSON, items)["items"]) == 1


def test_text_for_staff_never_reaches_the_person() -> None:
    view = person_view(PERSON, build_items(_found(), TODAY))
    text = json.dumps(view, ensure_ascii=False)
    assert "start_date" not in text and "expense_date" not in text and "wage base" not in text
    assert not re.search(r'"(kind|stage)_code"', text)
    assert _by_ref(view)["C-0"]["reasons"] == ["不符合办理条件，请联系医保经办机构咨询"]
    # Stage codes never show as names to the person: every stage has its name.
    for item in view["items"]:  # type: ignore[attr-defined]
        assert not re.search(r"[a-z_]{3,}", item["stage"] + item["next_step"] + item["kind"])


def test_the_id_is_masked_and_the_staff_view_carries_codes() -> None:
    items = build_items(_found(), TODAY)
    for view in (person_view(PERSON, items), staff_view(PERSON, items)):
        text = json.dumps(view, ensure_ascii=False)
        assert PERSON not in text and view["person_id"] == "2102**********1234"
    staff = _by_ref(staff_view(PERSON, items))
    assert staff["CH-2"]["stage_code"] == "submitted" and staff["CH-2"]["stage"] == "暂缓审核"
    assert staff["CH-2"]["due"] == "2027-01-04" and "2027年1月4日" in staff["CH-2"]["next_step"]
    assert staff["C-1"]["kind_code"] == "medical_claim"
    assert staff["C-1"]["service"] == "reimbursement"


def test_open_items_come_first_latest_change_first() -> None:
    items = build_items(_found(), TODAY)
    closed = [i.closed for i in items]
    assert closed == sorted(closed)  # every open item before every closed one
    assert items[0].reference in ("APP-1", "C-1", "T-1")  # changed on the 3rd


def test_every_stage_a_service_can_record_has_a_name() -> None:
    from services.enrollment.domain.model import ApplicationState
    from services.reimbursement.domain.claims import Stage as ClaimStage
    from services.transfer.domain.transfer import Stage as TransferStage

    assert set(ApplicationState) <= set(STAGES["enrollment_application"])
    assert set(ClaimStage) <= set(STAGES["medical_claim"])
    assert set(TransferStage) <= set(STAGES["transfer_out"])
    assert set(STAGES) == set(KIND_NAMES)


def test_the_terminal_text_is_chinese_with_codes_only_for_staff() -> None:
    items = build_items(_found(), TODAY)
    person = render_text(person_view(PERSON, items))
    assert "我的申办业务" in person and "下一步：" in person and "[" not in person
    assert PERSON not in person
    staff = render_text(staff_view(PERSON, items))
    assert "[remote_filing/enrollment]" in staff and "backfill_too_early" in staff


def test_reimbursement_refusals_are_kept_on_the_claim_or_with_staff() -> None:
    items = build_items(_found(), TODAY)
    staff = _by_ref(staff_view(PERSON, items))
    # Photos sent again while the claim is under review: noted on the claim, listed once.
    assert staff["C-1"]["refusals"] == ["claim_in_progress"]
    assert sum(i["reference"] == "C-1" for i in staff_view(PERSON, items)["items"]) == 1
    # A reviewer's decision about a claim that is not there answered the reviewer.
    assert staff["C-404"]["service"] == "reimbursement" and staff["C-404"]["staff_only"]
    assert staff["C-404"]["detail"] == "报销审核" and staff["C-404"]["rule"] == "unknown_claim"
    person = _by_ref(person_view(PERSON, items))
    assert "C-404" not in person and person["C-1"]["stage"] == "初审通过，待邮寄原件"
    assert RULE_REASONS["claim_in_progress"].startswith("该报销申请正在办理中")
