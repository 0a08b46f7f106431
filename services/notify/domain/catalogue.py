"""The message catalogue: templates as data, checked at load, rendered per event and channel."""
from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from services.notify.domain.reasons import person_reason
from shared.contracts import EVENT_TYPES
from shared.identity import REGIONS, division_name
from shared.observability.masking import mask_text

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
    "treatment_area_name", "rule_reason",
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


class CatalogueError(ValueError):
    """The catalogue is wrong; raised at start-up so it never surprises at send time."""


@dataclass(frozen=True)
class Template:
    key: str
    event_type: str
    channels: tuple[str, ...]
    sms: str | None
    email_subject: str | None
    email_body: str | None
    when: dict[str, str] = field(default_factory=dict)
    # Send the email to an address the event carries (e.g. the applicant), not the person's.
    email_to: str | None = None

    def matches(self, event_type: str, data: dict[str, Any]) -> bool:
        return event_type == self.event_type and all(
            str(data.get(k)) == v for k, v in self.when.items())


@dataclass(frozen=True)
class Message:
    channel: str
    recipient: str
    template: str
    subject: str | None
    body: str


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
    def __init__(self, templates: list[Template]) -> None:
        self.templates = templates

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        templates = []
        for raw in doc.get("template", []):
            t = Template(raw["key"], raw["event_type"], tuple(raw["channels"]), raw.get("sms"),
                         raw.get("email_subject"), raw.get("email_body"), raw.get("when", {}),
                         raw.get("email_to"))
            cls._check(t)
            templates.append(t)
        covered = {t.event_type for t in templates}
        missing = sorted(e for e, m in EVENT_TYPES.items() if m.person_facing and e not in covered)
        if missing:
            raise CatalogueError(f"no template for person-facing event type(s) {missing}")
        return cls(templates)

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
        for field_name in t.when:
            if field_name not in model.model_fields:
                raise CatalogueError(f"template {t.key}: condition on unknown field {field_name}")

    def event_types(self) -> set[str]:
        return {t.event_type for t in self.templates}

    def needs_contact(self, event_type: str) -> bool:
        return any(t.event_type == event_type and t.email_to is None for t in self.templates)

    def messages_for(self, event_type: str, data: dict[str, Any], contact: Contact | None,
                     region: str) -> list[Message]:
        """The messages an event produces for a person, respecting their channel choices."""
        out = []
        for t in self.templates:
            if not t.matches(event_type, data):
                continue
            if "{rule_reason}" in f"{t.sms}{t.email_body}" and person_reason(
                    str(data.get("rule"))) is None:
                continue  # a refusal for staff or the sending system, not the person's
            if t.email_to is not None:  # addressed by the event itself
                variables = _variables(data, contact, region)
                out.append(Message("email", str(data[t.email_to]), t.key,
                                   (t.email_subject or "").format(**variables),
                                   (t.email_body or "").format(**variables)))
                continue
            if contact is None:
                continue
            variables = _variables(data, contact, region)
            if "sms" in t.channels and contact.sms_opt_in:
                out.append(Message("sms", contact.mobile, t.key, None,
                                   (t.sms or "").format(**variables)))
            if "email" in t.channels and contact.email and contact.email_opt_in:
                out.append(Message("email", contact.email, t.key,
                                   (t.email_subject or "").format(**variables),
                                   (t.email_body or "").format(**variables)))
        return out


def _yuan(fen: object) -> str:
    return f"{Decimal(fen) / 100:.2f}" if isinstance(fen, int) else ""


def place_name(code: str) -> str:
    """A GB/T 2260 place as a person says it: 深圳市, 北京市朝阳区 (a county with its city, or
    its province where the city level is only 市辖区); the code itself if unknown."""
    own = division_name(code)
    if own is None:
        return code
    if code.endswith("00"):
        return own
    city = division_name(code[:4] + "00")
    if city is None or city.endswith("辖区") or city.endswith("辖县"):
        city = division_name(code[:2] + "0000")
    return f"{city}{own}" if city else own


def _variables(data: dict[str, Any], contact: Contact | None, region: str) -> dict[str, Any]:
    region_info = REGIONS.get(region)
    to_code = str(data.get("to_region", ""))
    amount = data.get("amount_fen")
    payable = data.get("payable_fen")
    return {
        **{k: ("" if v is None else v) for k, v in data.items()},
        "name": contact.name if contact else "",
        # A message never needs the whole ID number: the person knows it.
        "person_id_masked": mask_text(str(data.get("person_id", ""))),
        "filing_kind_name": FILING_KIND_NAMES.get(str(data.get("kind")), ""),
        "decision_text": "已办结" if data.get("approved") else "未通过审核",
        "insurance_type_name": INSURANCE_TYPE_NAMES.get(str(data.get("insurance_type")), ""),
        "region_name": region_info.name if region_info else region,
        "to_region_name": place_name(to_code) if to_code else "",
        "treatment_area_name": place_name(str(data.get("treatment_area") or "")),
        "rule_reason": person_reason(str(data.get("rule"))) or "",
        "disease_name": DISEASE_NAMES.get(str(data.get("disease")), str(data.get("disease", ""))),
        "reasons_text": "；".join(data.get("reasons") or []),
        "amount_yuan": f"{Decimal(amount) / 100:.2f}" if isinstance(amount, int) else "",
        "payable_yuan": f"{Decimal(payable) / 100:.2f}" if isinstance(payable, int) else "",
        "materials_text": "、".join(data.get("materials") or []),
        "cost_yuan": _yuan(data.get("cost_fen")),
        "balance_yuan": _yuan(data.get("account_balance_fen")),
        "working_text": "\n".join(data.get("working") or []),
    }
