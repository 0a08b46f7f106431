"""The message catalogue: templates as data, checked at load, rendered per event and channel."""
from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from itertools import combinations
from pathlib import Path
from typing import Any

from services.notify.domain.reasons import person_reason
from shared.contracts import EVENT_TYPES
from shared.identity import REGIONS, division_name
from shared.observability.masking import mask_text
from shared.policy.reference import POSTCODE, Reference

CHANNELS = ("sms", "email")
INSURANCE_TYPE_NAMES = {
    "employee": "职工基本医疗保险",
    "resident": "城乡居民基本医疗保险",
    "flexible": "灵活就业人员医疗保险",
}
DERIVED_VARIABLES = frozenset({
    "name", "person_id_masked", "insurance_type_name", "region_name", "reasons_text",
    "to_region_name", "amount_yuan", "filing_kind_name", "decision_text", "payable_yuan",
    "materials_text", "working_text", "cost_yuan", "balance_yuan", "disease_name",
    "treatment_area_name", "rule_reason", "institution_name", "benefit_level_name",
    "mail_to_address", "agency_name", "eligible_yuan", "deductible_yuan", "ratio_percent",
    "cap_remaining_yuan",
})
# People read diseases by their names, never the codes the contracts carry.
DISEASE_NAMES = {
    "hypertension": "高血压", "hypertension_grade3": "高血压（三级高危）", "diabetes": "糖尿病",
    "diabetes_insulin": "糖尿病（注射胰岛素治疗）",
    "malignant_tumour_outpatient": "恶性肿瘤门诊治疗",
    "malignant_tumour_radiochemotherapy": "恶性肿瘤放化疗", "uraemia_dialysis": "尿毒症透析",
    "organ_transplant_anti_rejection": "器官移植抗排异治疗", "leukaemia": "白血病",
}
FILING_KIND_NAMES = {"temporary": "临时外出就医", "long_term": "异地长期居住/工作",
                     "referral": "转外就医"}
# Variables a person reads as a reference to quote back (编号): Latin letters are theirs.
REFERENCE_VARIABLES = frozenset({
    "application_id", "claim_id", "filing_id", "transfer_id", "request_id", "authorisation_id",
    "reference", "policy_version", "settlement_id",
})
# Rule text meant for staff or a partner system: an English word or a field name. Capitals
# alone pass (CT, MRI, ICU are how Chinese texts name examinations).
LATIN_RULE_TEXT = re.compile(r"[a-z]{2,}|[A-Za-z]_[A-Za-z]")
# Why a message was not sent, as the operator reads it (`medins notify parked`).
NOT_SENT = "未发送："


class CatalogueError(ValueError):
    """The catalogue is wrong; raised at start-up so it never surprises at send time."""


def _norm(value: object) -> str:
    """How a condition sees a payload value: absent and null are the empty string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Condition:
    """One test of a payload field. `inside` True: the value must be one of `values`;
    False: it must be none of them (so `present = true` is "not the empty string")."""

    field: str
    inside: bool
    values: frozenset[str]

    @classmethod
    def parse(cls, name: str, raw: object, where: str) -> Condition:
        if not isinstance(raw, dict):
            return cls(name, True, frozenset({_norm(raw)}))
        if len(raw) != 1:
            raise CatalogueError(f"{where}: condition on {name} needs exactly one operator")
        [(op, arg)] = raw.items()
        if op in ("eq", "ne"):
            return cls(name, op == "eq", frozenset({_norm(arg)}))
        if op in ("in", "not_in"):
            if not isinstance(arg, list) or not arg:
                raise CatalogueError(f"{where}: {name}.{op} needs a non-empty list")
            return cls(name, op == "in", frozenset(_norm(a) for a in arg))
        if op == "present":
            if not isinstance(arg, bool):
                raise CatalogueError(f"{where}: {name}.present is true or false")
            return cls(name, not arg, frozenset({""}))
        raise CatalogueError(f"{where}: unknown operator {op!r} on {name} "
                             "(eq, ne, in, not_in, present)")

    def accepts(self, data: dict[str, Any]) -> bool:
        return (_norm(data.get(self.field)) in self.values) == self.inside

    def excludes(self, other: Condition) -> bool:
        """True when no value passes both (provably: an open set meets every other)."""
        if self.field != other.field:
            return False
        if self.inside and other.inside:
            return not self.values & other.values
        if self.inside != other.inside:
            closed, open_ = (self, other) if self.inside else (other, self)
            return closed.values <= open_.values
        return False


@dataclass(frozen=True)
class Template:
    key: str
    event_type: str
    channels: tuple[str, ...]
    sms: str | None
    email_subject: str | None
    email_body: str | None
    when: tuple[Condition, ...] = ()
    # Send the email to an address the event carries (e.g. the applicant), not the person's.
    email_to: str | None = None

    def matches(self, event_type: str, data: dict[str, Any]) -> bool:
        return event_type == self.event_type and all(c.accepts(data) for c in self.when)

    def texts(self) -> list[str]:
        return [t for t in (self.sms, self.email_subject, self.email_body) if t]


@dataclass(frozen=True)
class Message:
    channel: str
    recipient: str
    template: str
    subject: str | None
    body: str
    # Set when it must not go out as it is (a value missing or not for a person to read):
    # it is kept, parked, with this reason for an operator.
    problem: str | None = None


@dataclass(frozen=True)
class Contact:
    person_id: str
    name: str
    mobile: str
    email: str | None
    sms_opt_in: bool = True
    email_opt_in: bool = True


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


class Catalogue:
    """Per event, the most specific matching template is the one used: the one with the
    most conditions. Two templates of one event with as many conditions must exclude each
    other (checked at load), so a choice is never a guess."""

    def __init__(self, templates: list[Template], reference: Reference | None = None) -> None:
        self.templates = templates
        self.reference = reference or Reference({}, {})

    @classmethod
    def load(cls, path: Path, reference: Reference | None = None) -> Catalogue:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        templates = []
        for raw in doc.get("template", []):
            key = raw["key"]
            when = tuple(Condition.parse(name, value, f"template {key}")
                         for name, value in raw.get("when", {}).items())
            t = Template(key, raw["event_type"], tuple(raw["channels"]), raw.get("sms"),
                         raw.get("email_subject"), raw.get("email_body"), when,
                         raw.get("email_to"))
            cls._check(t)
            templates.append(t)
        covered = {t.event_type for t in templates}
        missing = sorted(e for e, m in EVENT_TYPES.items() if m.person_facing and e not in covered)
        if missing:
            raise CatalogueError(f"no template for person-facing event type(s) {missing}")
        cls._check_choices(templates)
        return cls(templates, Reference.load() if reference is None else reference)

    @staticmethod
    def _check(t: Template) -> None:
        model = EVENT_TYPES.get(t.event_type)
        if model is None:
            raise CatalogueError(f"template {t.key}: unknown event type {t.event_type}")
        for channel in t.channels:
            if channel not in CHANNELS:
                raise CatalogueError(f"template {t.key}: unknown channel {channel}")
        texts = {"sms": [t.sms]} if "sms" in t.channels else {}
        if "email" in t.channels:
            texts["email"] = [t.email_subject, t.email_body]
        allowed = set(model.model_fields) | DERIVED_VARIABLES
        for channel, parts in texts.items():
            if any(p is None for p in parts):
                raise CatalogueError(f"template {t.key}: no {channel} text")
            for part in parts:
                unknown = _placeholders(part or "") - allowed
                if unknown:
                    raise CatalogueError(
                        f"template {t.key}: variable(s) {sorted(unknown)} not in {t.event_type}")
        if t.email_to is not None and t.email_to not in model.model_fields:
            raise CatalogueError(f"template {t.key}: email_to names unknown field {t.email_to}")
        for condition in t.when:
            if condition.field not in model.model_fields:
                raise CatalogueError(
                    f"template {t.key}: condition on unknown field {condition.field}")

    @staticmethod
    def _check_choices(templates: list[Template]) -> None:
        for a, b in combinations(templates, 2):
            if a.event_type != b.event_type or len(a.when) != len(b.when):
                continue
            if not any(x.excludes(y) for x in a.when for y in b.when):
                raise CatalogueError(
                    f"templates {a.key} and {b.key}: same event, as many conditions, and an "
                    "event could match both; make one more specific or their conditions "
                    "exclusive")

    def event_types(self) -> set[str]:
        return {t.event_type for t in self.templates}

    def needs_contact(self, event_type: str) -> bool:
        return any(t.event_type == event_type and t.email_to is None for t in self.templates)

    def template_for(self, event_type: str, data: dict[str, Any]) -> Template | None:
        """The most specific template matching the event (ties are excluded at load)."""
        found = [t for t in self.templates if t.matches(event_type, data)]
        return max(found, key=lambda t: len(t.when)) if found else None

    def messages_for(self, event_type: str, data: dict[str, Any], contact: Contact | None,
                     region: str) -> list[Message]:
        """The messages an event produces for a person, respecting their channel choices.
        A message with a missing value or staff rule text is returned with its `problem`."""
        t = self.template_for(event_type, data)
        if t is None:
            return []
        if "{rule_reason}" in f"{t.sms}{t.email_body}" and person_reason(
                str(data.get("rule"))) is None:
            return []  # a refusal for staff or the sending system, not the person's
        if t.email_to is None and contact is None:
            return []
        variables = self.variables(data, contact, region)
        problem = problem_with(t, variables)

        def render(text: str | None) -> str:
            return (text or "").format(**variables)

        if t.email_to is not None:  # addressed by the event itself
            return [Message("email", str(data[t.email_to]), t.key, render(t.email_subject),
                            render(t.email_body), problem)]
        assert contact is not None
        out = []
        if "sms" in t.channels and contact.sms_opt_in:
            out.append(Message("sms", contact.mobile, t.key, None, render(t.sms), problem))
        if "email" in t.channels and contact.email and contact.email_opt_in:
            out.append(Message("email", contact.email, t.key, render(t.email_subject),
                               render(t.email_body), problem))
        return out

    def variables(self, data: dict[str, Any], contact: Contact | None,
                  region: str) -> dict[str, Any]:
        """The payload and the derived variables; a code without a name is left empty, so
        it counts as missing instead of being shown raw."""
        region_info = REGIONS.get(region)
        to_code = str(data.get("to_region") or "")
        agency = self.reference.agencies.get(region)
        mail_to = str(data.get("mail_to") or "")
        return {
            **{k: ("" if v is None else v) for k, v in data.items()},
            "name": contact.name if contact else "",
            # A message never needs the whole ID number: the person knows it.
            "person_id_masked": mask_text(str(data.get("person_id") or "")),
            "filing_kind_name": FILING_KIND_NAMES.get(str(data.get("kind")), ""),
            "benefit_level_name": FILING_KIND_NAMES.get(str(data.get("benefit_level")), ""),
            "decision_text": "已办结" if data.get("approved") else "未通过审核",
            "insurance_type_name": INSURANCE_TYPE_NAMES.get(str(data.get("insurance_type")), ""),
            "region_name": region_info.name if region_info else "",
            "agency_name": agency.name if agency else (
                f"{region_info.name}医疗保障事务服务中心" if region_info else ""),
            "to_region_name": _place(to_code),
            "treatment_area_name": _place(str(data.get("treatment_area") or "")),
            "institution_name": self.reference.institution_name(
                str(data.get("institution_code") or "")) or "",
            "rule_reason": person_reason(str(data.get("rule"))) or "",
            "disease_name": DISEASE_NAMES.get(str(data.get("disease")), ""),
            "reasons_text": "；".join(data.get("reasons") or []),
            "amount_yuan": _yuan(data.get("amount_fen")),
            "payable_yuan": _yuan(data.get("payable_fen")),
            "materials_text": "、".join(data.get("materials") or []),
            "cost_yuan": _yuan(data.get("cost_fen")),
            "balance_yuan": _yuan(data.get("account_balance_fen")),
            "working_text": "\n".join(data.get("working") or []),
            "eligible_yuan": _yuan(data.get("eligible_fen")),
            "deductible_yuan": _yuan(data.get("deductible_fen")),
            "ratio_percent": _percent(data.get("ratio")),
            "cap_remaining_yuan": _yuan(data.get("cap_remaining_fen")),
            # Originals go by post: only an address with its postcode will do.
            "mail_to_address": mail_to if POSTCODE.match(mail_to[:6]) else "",
        }


def problem_with(t: Template, variables: dict[str, Any]) -> str | None:
    """Why the rendered template must not reach the person: an empty value, or a value that
    is rule text for staff (English words, field names). None when it may go."""
    used = sorted(set().union(*(_placeholders(text) for text in t.texts())))
    empty = [v for v in used if str(variables.get(v, "")).strip() == ""]
    if empty:
        return f"{NOT_SENT}缺少内容（{', '.join(empty)}），请核实后联系本人"
    latin = [v for v in used if v not in REFERENCE_VARIABLES and v != "name"
             and LATIN_RULE_TEXT.search(str(variables[v]))]
    if latin:
        return f"{NOT_SENT}内容含英文规则文字（{', '.join(latin)}），须改为中文后联系本人"
    return None


def _yuan(fen: object) -> str:
    return f"{Decimal(fen) / 100:.2f}" if isinstance(fen, int) else ""


def _percent(ratio: object) -> str:
    """A decimal ratio as people write it: 0.85 → 85%, 0.925 → 92.5%."""
    try:
        value = Decimal(str(ratio)) * 100
    except ArithmeticError:
        return ""
    return f"{value.normalize():f}%" if ratio is not None and value.is_finite() else ""


def place_name(code: str) -> str:
    """A GB/T 2260 place as a person says it: 深圳市, 北京市朝阳区 (a county with its city, or
    its province where the city level is only 市辖区); the code itself if unknown."""
    return _place(code) or code


def _place(code: str) -> str:
    """As place_name, but empty for an unknown code (a missing value, never shown raw)."""
    own = division_name(code)
    if own is None:
        return ""
    if code.endswith("00"):
        return own
    city = division_name(code[:4] + "00")
    if city is None or city.endswith("辖区") or city.endswith("辖县"):
        city = division_name(code[:2] + "0000")
    return f"{city}{own}" if city else own


def references_in(variables: dict[str, Any], names: Iterable[str]) -> list[str]:
    """The rendered values of the reference variables among `names` (a person quotes them
    back; their letters are no rule text)."""
    return [str(variables[n]) for n in names if n in REFERENCE_VARIABLES and variables.get(n)]
