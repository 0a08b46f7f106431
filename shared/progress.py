"""A person's progress (我的申办业务): every request and case of every service, and next step."""
from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from services.notify.domain.catalogue import FILING_KIND_NAMES, INSURANCE_TYPE_NAMES, place_name
from services.notify.domain.reasons import FALLBACK, STAFF_ONLY_RULES, person_reason
from shared.clock import china_date, china_today
from shared.observability.masking import mask_text, mask_value
from shared.settings import PlatformSettings

# This module reads every service's rows, so like shared.status it belongs to the
# composition root: services never import it.

KIND_NAMES: dict[str, str] = {
    "enrollment_application": "参保登记申请",
    "chronic_recognition": "门诊慢特病认定",
    "chronic_change": "门诊慢特病定点机构变更",
    "death_cancellation": "死亡注销",
    "civil_servant_benefit": "公务员医疗补助",
    "remote_filing": "异地就医备案",
    "accident_filing": "意外伤害住院备案",
    "family_aid": "家庭共济授权",
    "contribution_stop": "停保申请",
    "medical_claim": "报销申请",
    "maternity_medical_claim": "生育医疗费用报销",
    "maternity_allowance": "生育津贴",
    "epidemic_coverage": "疫情专项医疗保障",
    "transfer_out": "转移接续（转出）",
    "transfer_in": "转移接续（转入）",
    "refused_request": "被拒绝的请求",
}

DONE = "无需操作，办结"
WAIT_REVIEW = "等待审核，无需操作"
RETRY = "可按原因修改或补充材料后重新申请"
ASK = "如有疑问请联系医保经办机构"

# Stage code -> (what the person reads, the next step, closed?). One table per kind family;
# a next step naming "{due}" is given the item's due date.
_APPLICATION = {
    "submitted": ("待审核", WAIT_REVIEW, False),
    "approved": ("审核通过，待缴费", "请按税务机关通知缴费，缴费后参保生效", False),
    "paid": ("已缴费，参保生效", DONE, True),
    "rejected": ("未通过审核", RETRY, True),
}
_CASE = {
    "submitted": ("待审核", WAIT_REVIEW, False),
    "postponed": ("暂缓审核", "无需操作，将于{due}起审核", False),
    "approved": ("已办结", DONE, True),
    "rejected": ("未通过审核", RETRY, True),
}
_CIVIL_SERVANT = _CASE | {
    "submitted": ("待审核（单位申请）", "等待审核，由单位办理，本人无需操作", False),
    "approved": ("已享受", DONE, True),
    "rejected": ("未通过审核", "由单位补充材料后重新申请", True),
}
_FILING = {
    "active": ("已备案，有效", "无需操作，就医时直接结算；有效期至{due}", False),
    "active_open": ("已备案，有效", "无需操作，就医时直接结算", False),
    # An accident filing is accepted only within its deadline: nothing is left to do.
    "accepted": ("已备案", "无需操作，办结；住院费用按规定结算", True),
    "ended": ("已终止", DONE, True),
}
_FAMILY_AID = {
    "active": ("已授权，有效", "无需操作，可在授权范围内使用个人账户", False),
    "ended": ("已终止", DONE, True),
}
_STOP = {
    "scheduled": ("已受理", "无需操作，将于{due}起暂停参保", False),
    "accepted": ("已受理，已停保", DONE, True),
}
_WAITING = {
    "awaiting_policy": ("等待政策发布", "无需操作，相关政策发布后自动办理", False),
}
_CLAIM = {
    "submitted": ("已受理", WAIT_REVIEW, False),
    "preliminary_review": ("初审中", WAIT_REVIEW, False),
    "materials_pending": ("初审通过，待邮寄原件", "请按短信或邮件通知邮寄发票等原件", False),
    "verification": ("原件复核中", "等待复核，无需操作", False),
    "calculation": ("核算中", "等待核算报销金额，无需操作", False),
    "awaiting_policy": ("等待政策发布", "无需操作，相关政策发布后自动继续办理", False),
    "approved": ("待支付", "等待支付到账，无需操作", False),
    "approved_by": ("待支付", "等待支付到账，无需操作（最迟{due}）", False),
    "paid": ("已支付", "无需操作，办结；请查收银行账户", True),
    "paid_institution": ("已支付给医疗机构", DONE, True),
    "payment_failed": ("支付失败", "请核对银行账户信息后联系医保经办机构", False),
    # Money owed to the hospital (epidemic coverage): the agency settles it; the patient owes
    # and does nothing.
    "payment_failed_institution": ("医保经办机构与医疗机构结算中", "无需本人操作", False),
    "rejected": ("未通过审核", RETRY, True),
}
_BIRTH = {
    "waiting_for_wage_base": ("待核定", "无需操作，单位申报上年度缴费工资后自动核发", False),
    "not_eligible": ("不符合享受条件", ASK, True),
}
_TRANSFER = {
    "awaiting_suspension": ("待本地停保", "无需操作，本地停止缴费后自动办理转出", False),
    "awaiting_info_sheet": ("转出地办理中", "等待经办机构出具参保信息表，无需操作", False),
    "waiting_on_person": ("待补充材料", "请按通知补充材料，补齐后继续办理", False),
    "sent": ("已发往转入地", "等待转入地审核，无需操作", False),
    "letter_pending": ("待寄出联系函", "等待经办机构寄出联系函，无需操作", False),
    "letter_sent": ("联系函已寄出", "等待转入地接收，无需操作", False),
    "letter_received": ("转入地已收到联系函", "等待转入地审核，无需操作", False),
    "received": ("转入地已接收", "等待转出地资金划转，无需操作", False),
    "completed": ("已办结", DONE, True),
    "failed": ("转入地未接收", ASK, True),
    "refused": ("不予受理", RETRY, True),
    "cancelled": ("已撤销", DONE, True),
}
_REFUSED = {
    "refused": ("未受理", RETRY, True),
    "refused_staff": ("未受理（经办环节）", "无需本人操作", True),
}

STAGES: dict[str, dict[str, tuple[str, str, bool]]] = {
    "enrollment_application": _APPLICATION,
    "chronic_recognition": _CASE | _WAITING,
    "chronic_change": _CASE,
    "death_cancellation": _CASE,
    "civil_servant_benefit": _CIVIL_SERVANT,
    "remote_filing": _FILING,
    "accident_filing": _FILING | _WAITING,
    "family_aid": _FAMILY_AID,
    "contribution_stop": _STOP,
    "medical_claim": _CLAIM,
    "maternity_medical_claim": _CLAIM,
    "maternity_allowance": _CLAIM | _BIRTH,
    "epidemic_coverage": _CLAIM,
    "transfer_out": _TRANSFER,
    "transfer_in": _TRANSFER,
    "refused_request": _REFUSED,
}

# The request a refusal answered, by the middle of its event type (stable across versions
# and producers' prefixes).
REQUEST_NAMES: dict[str, str] = {
    "enrollment.submitted": "参保登记申请",
    "enrollment.decided": "参保登记审核",
    "contribution.paid": "缴费到账",
    "contribution.stop-requested": "停保申请",
    "death-cancellation.applied": "死亡注销申请",
    "death-cancellation.decided": "死亡注销审核",
    "remote-filing.applied": "异地就医备案申请",
    "remote-filing.change-requested": "终止异地就医备案",
    "admission.flagged": "急诊入院备案",
    "accident-injury.filed": "意外伤害住院备案申请",
    "chronic-disease.applied": "门诊慢特病申请",
    "chronic-disease.decided": "门诊慢特病认定审核",
    "family-aid.authorised": "家庭共济授权",
    "family-aid.revoked": "撤销家庭共济授权",
    "civil-servant-benefit.applied": "公务员医疗补助申请",
    "civil-servant-benefit.decided": "公务员医疗补助审核",
    "roster.submitted": "单位增减员",
    "treatment.recorded": "门诊慢特病免申认定",
    "transfer.completed": "医保关系转出",
    "transfer-in.completed": "医保关系转入",
    "claim.submitted": "报销申请",
    "claim.decided": "报销审核",
    "claim.materials-mailed": "邮寄报销原件",
    "payment.result": "报销款支付结果",
}
# Requests waiting for a policy become these kinds once decided.
_WAITING_KINDS = {"chronic-disease.applied": "chronic_recognition",
                  "accident-injury.filed": "accident_filing"}
_CASE_KINDS = {"chronic_recognition", "chronic_change", "death_cancellation",
               "civil_servant_benefit"}
_CLAIM_KINDS = {"medical": "medical_claim", "maternity_medical": "maternity_medical_claim",
                "maternity_allowance": "maternity_allowance", "epidemic": "epidemic_coverage"}
# Text meant for staff or partner systems (field names, rule text in English) is never
# shown to the person: a lowercase Latin word is the sign of it.
_STAFF_TEXT = re.compile(r"[a-z_]{3,}")


@dataclass(frozen=True)
class Item:
    """One request or case of the person, in codes; names are looked up when shown."""

    kind: str
    reference: str
    stage: str
    service: str
    submitted: date | None = None
    changed: date | None = None
    due: date | None = None
    detail: str = ""  # Chinese: the filing's type, the region moved to, the refused request
    reasons: tuple[str, ...] = ()  # as recorded (staff read them whole)
    rule: str | None = None  # a refusal's rule code
    refusals: tuple[str, ...] = ()  # rule codes of later refusals about this item (staff)
    staff_only: bool = False  # a refusal that answered staff, an employer or a channel
    # Which line of the stage table applies when the code alone does not say (a review put
    # off by a measure, a filing without an end date, a payment due by a declared day).
    variant: str = ""

    def _line(self) -> tuple[str, str, bool]:
        table = STAGES[self.kind]
        return table.get(self.variant or self.stage) or table.get(self.stage) or (
            self.stage, ASK, False)

    @property
    def stage_name(self) -> str:
        return self._line()[0]

    @property
    def closed(self) -> bool:
        return self._line()[2]

    @property
    def next_step(self) -> str:
        step = self._line()[1]
        return step.replace("{due}", _cn_date(self.due)) if self.due else step

    def person_reasons(self) -> list[str]:
        """The reasons as the person reads them: the Chinese sentence of a rule, or the
        reviewer's words; anything written for staff becomes the general sentence."""
        if self.rule is not None:
            return [person_reason(self.rule) or FALLBACK]
        return list(dict.fromkeys(r if r and not _STAFF_TEXT.search(r) else FALLBACK
                                  for r in self.reasons))


def _cn_date(day: date | None) -> str:
    return f"{day.year}年{day.month}月{day.day}日" if day else ""


def _day(value: Any) -> date | None:
    if isinstance(value, datetime):
        return china_date(value)
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _request_key(event_type: str) -> str | None:
    for key in REQUEST_NAMES:
        if f".{key}." in f".{event_type}.":
            return key
    return None


# --- rows to items, one function per service ----------------------------------------------

def _enrollment_items(rows: dict[str, list[dict[str, Any]]], today: date) -> list[Item]:
    items: list[Item] = []
    for a in rows.get("applications", []):
        items.append(Item("enrollment_application", a["application_id"], a["state"],
                          "enrollment", _day(a["created_at"]), _day(a["updated_at"]),
                          detail=INSURANCE_TYPE_NAMES.get(a["insurance_type"], ""),
                          reasons=tuple(a.get("reasons") or ())))
    for c in rows.get("cases", []):
        due = _day(c.get("review_from"))
        # An emergency measure put the review off until then.
        postponed = c["state"] == "submitted" and due is not None and due > today
        items.append(Item(c["kind"], c["case_id"], c["state"], "enrollment",
                          _day(c["created_at"]), _day(c["updated_at"]),
                          due if postponed else None, reasons=tuple(c.get("reasons") or ()),
                          variant="postponed" if postponed else ""))
    for f in rows.get("filings", []):
        if f["category"] == "accident":
            items.append(Item("accident_filing", f["filing_id"], f["state"], "enrollment",
                              _day(f["created_at"]), _day(f["updated_at"])))
            continue
        end = _day(f.get("end_date"))
        kind_name = FILING_KIND_NAMES.get(f["kind"], "")
        if f.get("source") == "emergency_admission":
            kind_name = "急诊入院"
        items.append(Item("remote_filing", f["filing_id"], f["state"], "enrollment",
                          _day(f["created_at"]), _day(f["updated_at"]),
                          end if f["state"] == "active" else None, detail=kind_name,
                          variant="active_open" if f["state"] == "active" and not end else ""))
    for a in rows.get("family_aid", []):
        items.append(Item("family_aid", a["authorisation_id"], a["state"], "enrollment",
                          _day(a["created_at"]), _day(a["updated_at"]),
                          detail="本人授权亲属" if a["granted"] else "亲属授权本人"))
    for w in rows.get("awaiting_policy", []):
        key = _request_key(w["event_type"])
        if w.get("resumed_at") is None and key in _WAITING_KINDS:
            items.append(Item(_WAITING_KINDS[key], w["reference"], "awaiting_policy",
                              "enrollment", _day(w["received_at"]), _day(w["waiting_since"])))
    for h in rows.get("history", []):
        if h["what"] == "stop requested":
            since = _day(h["detail"].get("suspended_from"))
            items.append(Item("contribution_stop", h["reference"],
                              "scheduled" if since and since > today else "accepted",
                              "enrollment", _day(h["recorded_at"]), _day(h["recorded_at"]),
                              since))
    refused = _refusals(rows.get("refused", []), items, "enrollment")  # notes them on `items`
    return items + refused


def _refusals(refused: list[dict[str, Any]], items: list[Item], service: str) -> list[Item]:
    """A refusal about something already listed (a second decision, a postponed review) is
    noted on it; one whose request never became anything is an item of its own."""
    by_ref = {i.reference: n for n, i in enumerate(items)}
    alone: dict[str, Item] = {}
    for r in refused:
        ref, rule = r["reference"], r["rule"]
        if ref in by_ref:
            n = by_ref[ref]
            items[n] = _with_refusal(items[n], rule)
            continue
        key = _request_key(r["request_type"])
        staff = rule in STAFF_ONLY_RULES
        alone[ref] = Item(
            "refused_request", ref, "refused", service, _day(r["refused_at"]),
            _day(r["refused_at"]), detail=REQUEST_NAMES[key] if key else "业务申请",
            reasons=(r["reason"],), rule=rule, staff_only=staff,
            variant="refused_staff" if staff else "")
    return list(alone.values())


def _with_refusal(item: Item, rule: str) -> Item:
    return replace(item, refusals=(*item.refusals, rule))


def _reimbursement_items(rows: dict[str, list[dict[str, Any]]], today: date) -> list[Item]:
    items: list[Item] = []
    for c in rows.get("claims", []):
        kind = _CLAIM_KINDS.get(c["benefit_line"], "medical_claim")
        stage, due, variant = c["stage"], _day(c.get("pay_by")), ""
        if stage == "paid" and c.get("payee") == "institution":
            variant = "paid_institution"
        elif stage == "payment_failed" and c.get("payee") == "institution":
            variant = "payment_failed_institution"
        elif stage == "approved" and due is not None:
            variant = "approved_by"  # an outage record: paid by the day the agency declared
        detail = "经办机构主动办理，无需申请" if c.get("channel") is None else ""
        items.append(Item(kind, c["claim_id"], stage, "reimbursement",
                          _day(c.get("filed_on") or c["created_at"]), _day(c["updated_at"]),
                          due, detail=detail, reasons=tuple(c.get("reasons") or ()),
                          variant=variant))
    for b in rows.get("births", []):
        items.append(Item("maternity_allowance", b["birth_id"], b["state"], "reimbursement",
                          _day(b.get("birth_date")), _day(b.get("birth_date")),
                          detail="免申即享", reasons=(str(b.get("reason") or ""),)))
    return items + _refusals(rows.get("refused", []), items, "reimbursement")


def _transfer_items(rows: dict[str, list[dict[str, Any]]], today: date) -> list[Item]:
    items: list[Item] = []
    for t in rows.get("transfers", []):
        out = t["direction"] == "out"
        other = t["to_region"] if out else t["from_region"]
        detail = f"{'转往' if out else '转自'}{place_name(other)}"
        if t.get("trigger") not in (None, "application"):
            detail += "（经办机构主动办理）"
        items.append(Item("transfer_out" if out else "transfer_in", t["transfer_id"],
                          t["stage"], "transfer", t.get("started_on") or _day(t["created_at"]),
                          _day(t["updated_at"]),
                          None if t["stage"] in ("completed", "failed", "refused", "cancelled")
                          else t.get("due_on"),
                          detail=detail, reasons=(t["reason"],) if t.get("reason") else ()))
    return items


MAPPERS: dict[str, Callable[[dict[str, list[dict[str, Any]]], date], list[Item]]] = {
    "enrollment": _enrollment_items,
    "reimbursement": _reimbursement_items,
    "transfer": _transfer_items,
}


def build_items(found: dict[str, dict[str, list[dict[str, Any]]]],
                today: date | None = None) -> list[Item]:
    """Every item of the person, open ones first, each group the latest change first."""
    today = today or china_today()
    items = [i for service, rows in found.items() if service in MAPPERS
             for i in MAPPERS[service](rows, today)]
    return sorted(items, key=lambda i: (i.closed, -(i.changed or date.min).toordinal(),
                                        i.reference))


# --- views ----------------------------------------------------------------------------------

def person_view(person_id: str, items: list[Item]) -> dict[str, Any]:
    """What the person reads: Chinese names and next steps, never codes; masked ID."""
    shown = []
    for i in items:
        if i.staff_only:
            continue  # answered a member of staff or a channel: the person did nothing wrong
        entry: dict[str, Any] = {
            "kind": KIND_NAMES[i.kind], "detail": i.detail, "reference": i.reference,
            "stage": i.stage_name, "submitted": i.submitted, "last_change": i.changed,
            "due": i.due, "next_step": i.next_step}
        if i.stage in ("rejected", "refused", "failed", "not_eligible", "payment_failed") \
                and i.variant != "payment_failed_institution":
            entry["reasons"] = i.person_reasons()
        shown.append(entry)
    return _jsonable({"person_id": mask_text(person_id), "items": shown})


def staff_view(person_id: str, items: list[Item]) -> dict[str, Any]:
    """The person's view plus codes: kind, stage, service, rule, refusals, reasons as
    recorded; still masked and without health or contact data."""
    shown = []
    for i in items:
        shown.append({
            "kind": KIND_NAMES[i.kind], "kind_code": i.kind, "detail": i.detail,
            "reference": i.reference, "service": i.service, "stage": i.stage_name,
            "stage_code": i.stage, "submitted": i.submitted, "last_change": i.changed,
            "due": i.due, "next_step": i.next_step, "closed": i.closed, "rule": i.rule,
            "staff_only": i.staff_only, "reasons": list(i.reasons),
            "refusals": list(i.refusals)})
    return _jsonable({"person_id": mask_text(person_id), "items": shown})


def _jsonable(view: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value.isoformat() if isinstance(value, date) else value

    masked: dict[str, Any] = mask_value(plain(view))
    return masked


# --- collection (I/O) -------------------------------------------------------------------------

async def collect_progress(settings: PlatformSettings, person_id: str
                           ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Each service's rows about the person, from its own schema through its views module
    (`progress_of`); a service this region does not run is left out."""
    from shared.db.pool import connect

    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for service in MAPPERS:
        schema = settings.schema_for(service)
        conn = await connect(settings.database_url, schema)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1",
                                       schema):
                continue
            views = importlib.import_module(f"services.{service}.views")
            found[service] = await views.progress_of(conn, person_id)
        finally:
            await conn.close()
    return found


async def progress_of(settings: PlatformSettings, person_id: str,
                      today: date | None = None) -> list[Item]:
    return build_items(await collect_progress(settings, person_id), today)


def render_text(view: dict[str, Any]) -> str:
    """The view as lines for a terminal, in Chinese; the staff view's codes in brackets."""
    items = view["items"]
    lines = [f"我的申办业务（证件号 {view['person_id']}）：共{len(items)}项"]
    if not items:
        lines.append("未找到办理记录")
    for n, i in enumerate(items, 1):
        kind = f"{i['kind']}：{i['detail']}" if i["detail"] else i["kind"]
        stage = i["stage"]
        if "kind_code" in i:
            kind += f" [{i['kind_code']}/{i['service']}]"
            stage += f" [{i['stage_code']}{'/' + i['rule'] if i['rule'] else ''}]"
        lines.append(f"{n}. {kind}  编号 {i['reference']}")
        dates = (f"   办理阶段：{stage}；提交：{i['submitted'] or '—'}；"
                 f"更新：{i['last_change'] or '—'}")
        if i["due"]:
            dates += f"；时限：{i['due']}"
        lines.append(dates)
        lines.append(f"   下一步：{i['next_step']}")
        if i.get("reasons"):
            lines.append(f"   原因：{'；'.join(i['reasons'])}")
        if i.get("refusals"):
            lines.append(f"   其后被拒绝的操作：{'、'.join(i['refusals'])}")
    return "\n".join(lines)
