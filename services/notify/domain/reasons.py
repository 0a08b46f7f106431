"""Why a request was refused, in the words a person reads, by the rule code that refused it."""
from __future__ import annotations

# Every rule code a service refuses a person's request with has a sentence here (a test scans
# the services for codes and fails on one without it). The rule's own text, which names
# fields for staff and partner systems, never reaches the person.
RULE_REASONS: dict[str, str] = {
    "agent_only_for_flexible": "代办人只能为灵活就业人员申请死亡注销",
    "already_cancelled": "该人员的参保关系已因死亡注销",
    "already_insured": "您已在本地参保，无需重复登记",
    "already_retired": "您已办理退休，无需重复办理",
    "application_open": "您还有一笔参保登记申请正在办理中，请等待办理结果",
    "backfill_too_early": "长期异地备案的开始日期最早只能追溯到备案前5天",
    "claim_in_progress": "该报销申请正在办理中，无需重复提交，请在我的申办业务中查看进度",
    "chronic_rejected": "门诊慢特病认定未通过审核",
    "employer_pays": "职工医保的停保由单位通过减员办理，不能由个人申请",
    "end_before_start": "备案的结束日期不能早于开始日期",
    "filed_too_late": "已超过意外伤害住院备案的时限",
    "future_date": "入院日期不能晚于备案日期",
    "future_timestamp": "申请时间晚于受理时间，请核对后重新提交",
    "insured_elsewhere": "您正通过其他单位参保",
    "materials_not_expected": "该报销申请当前无需邮寄原件，请以初审通过的通知为准",
    "materials_missing": "请签署承诺书并上传身份证照片后再申请",
    "no_authorisation": "没有找到您有效的家庭共济授权",
    "no_open_filing": "没有找到您有效的异地就医备案",
    "no_personal_account": "只有有个人账户的在职职工（含灵活就业人员）才能授权家庭共济",
    "not_active": "您目前的参保状态不能办理此项业务",
    "not_insured": "您目前不在本地参保，或参保状态不能办理此项业务",
    "not_recognised": "您尚未认定该门诊慢特病，请先申请认定",
    "not_remote": "就医地在参保地市内，无需办理异地就医备案",
    "not_suspended": "只有已停保的人员才能办理转出",
    "other_province": "家庭共济的亲属须在本省参保",
    "person_deceased": "该人员的参保关系已因死亡注销",
    "reason_required": "长期异地备案须说明异地居住或工作的原因",
    "recognition_postponed": "门诊慢特病认定暂缓办理，请在通知的日期后再申请审核",
    "same_institution": "您选择的机构已是您的定点机构",
    "same_region": "转入地不能是您目前的参保地",
    "self": "家庭共济只能授权给本人以外的近亲属",
    "student_not_resident": "在校学生请按学生类别办理长期异地备案",
    "third_party": "有第三方责任的意外伤害不能办理此项备案",
    "transfer_open": "您已有一笔正在办理的医保关系转移，请等待办理结果",
    "unknown_region": "转入地不是有效的行政区划，请核对转入地后重新申请",
}

# Codes that answer a member of staff, an employer or a channel about their own message (a
# second decision on a closed application, a reference already used): never texted to the
# person, who did nothing wrong. They stay on the topic for whoever sent the request.
STAFF_ONLY_RULES = frozenset({
    "duplicate_application", "illegal_status_transition", "invalid_row", "not_on_staff",
    "person_mismatch", "reasons_required", "review_not_pending", "subject_mismatch",
    "unknown_application", "unknown_employer", "wrong_region",
    # transfer offices' commands (letters, balances, stages): the office hears them
    "amount_mismatch", "not_paper", "out_of_order", "unknown_transfer",
    # reimbursement: staff stage decisions, the bank's results, a case no policy rule covers
    "unknown_claim", "unknown_payment", "no_policy_rule",
})

FALLBACK = "不符合办理条件，请联系医保经办机构咨询"


def person_reason(rule: str) -> str | None:
    """The sentence for the person, or None when the refusal is not theirs to hear of."""
    if rule in STAFF_ONLY_RULES:
        return None
    return RULE_REASONS.get(rule, FALLBACK)
