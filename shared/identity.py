"""Identifier checks: resident ID (GB 11643), CN mobile, and the served regions (GB/T 2260)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Annotated

import phonenumbers
from pydantic import AfterValidator
from stdnum.cn import ric
from stdnum.exceptions import ValidationError as StdnumError

_PLAIN_ID = re.compile(r"[0-9]{17}[0-9X]")


class IdentifierError(ValueError):
    """An identifier breaks a rule; the message names the rule."""


@dataclass(frozen=True)
class ResidentIdCheck:
    number: str
    birth_date: date
    birth_place: str | None
    warnings: list[str] = field(default_factory=list)


def _valid_number(raw: str, today: date | None) -> tuple[str, date]:
    """The compact number and its birth date, or IdentifierError naming the broken rule."""
    number = raw.strip().upper() if isinstance(raw, str) else ""
    if not _PLAIN_ID.fullmatch(number):
        # stdnum's clean-up (spaces, dashes, full-width forms) only when it is needed: on
        # every event it costs more than the whole check of an already clean number.
        number = ric.compact(raw).upper() if isinstance(raw, str) else ""
    if len(number) != 18:
        raise IdentifierError("resident ID must have 18 characters")
    if not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        raise IdentifierError("resident ID must be 17 digits and a check character 0-9 or X")
    if ric.calc_check_digit(number) != number[17]:
        raise IdentifierError("resident ID check character does not match (GB 11643 checksum)")
    try:
        # Digits 7-14 are the birth date (GB 11643); stdnum's getter would clean it again.
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise IdentifierError("resident ID holds no valid birth date") from None
    if birth > (today or date.today()):
        raise IdentifierError("resident ID birth date is in the future")
    return number, birth


def check_resident_id(raw: str, today: date | None = None) -> ResidentIdCheck:
    """Validate an 18-character resident ID; an unknown county for the birth year only warns.

    stdnum rejects a county code created after the birth year, but such people exist (their
    county was renamed or split later), so that check is advisory here.
    """
    number, birth = _valid_number(raw, today)
    warnings: list[str] = []
    place: str | None = None
    try:
        info = ric.get_birth_place(number)
        place = "".join(info.get(k, "") for k in ("province", "prefecture", "county"))
    except StdnumError:
        warnings.append(f"county code {number[:6]} unknown for birth year {birth.year}")
    return ResidentIdCheck(number, birth, place, warnings)


@lru_cache(maxsize=65536)
def validate_resident_id(raw: str) -> str:
    """Cached: every contract carrying an ID validates it, often many times per event. The
    birth place (an advisory look-up, most of the cost) is not needed to accept a number."""
    return _valid_number(raw, None)[0]


@lru_cache(maxsize=65536)
def validate_cn_mobile(raw: str) -> str:
    """Return an 11-digit CN mobile number or raise naming the rule."""
    try:
        parsed = phonenumbers.parse(raw, "CN")
    except phonenumbers.NumberParseException:
        raise IdentifierError("mobile is not a phone number") from None
    national = str(parsed.national_number)
    if (
        parsed.country_code != 86
        or len(national) != 11
        or not phonenumbers.is_valid_number(parsed)
        or phonenumbers.number_type(parsed) != phonenumbers.PhoneNumberType.MOBILE
    ):
        raise IdentifierError("mobile must be a valid 11-digit mainland China mobile number")
    return national


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    province: str

    @property
    def province_code(self) -> str:
        return self.code[:2]


REGIONS: dict[str, Region] = {
    r.code: r
    for r in (
        Region("210200", "大连市", "辽宁省"),
        Region("370100", "济南市", "山东省"),
        Region("150200", "包头市", "内蒙古自治区"),
        Region("371000", "威海市", "山东省"),
        Region("330300", "温州市", "浙江省"),
    )
}


def validate_region(code: str) -> str:
    if code not in REGIONS:
        raise IdentifierError(f"region {code} is not a served region ({', '.join(REGIONS)})")
    return code


@lru_cache(maxsize=4096)
def division_name(code: str) -> str | None:
    """The current name of a GB/T 2260 division code (stdnum's table), None if unknown or
    abolished: any region in China, served here or not, for transfers by paper letter."""
    if code in REGIONS:
        return REGIONS[code].name
    if len(code) != 6 or not code.isdigit():
        return None
    from stdnum import numdb

    parts = numdb.get("cn/loc").info(code)
    if len(parts) != 2 or "county" not in parts[1][1]:
        return None
    # Names carry validity as "[1983-]深圳市" or "[-1980]旅大市,[1981-]大连市": keep a current one.
    current = parts[1][1]["county"].split(",")[-1]
    if current.startswith("["):
        span, _, current = current[1:].partition("]")
        if not span.endswith("-"):
            return None  # abolished
    return current or None


def validate_any_region(code: str) -> str:
    if division_name(code) is None:
        raise IdentifierError(f"region {code} is not a current GB/T 2260 division code")
    return code


def same_province(a: str, b: str) -> bool:
    return a[:2] == b[:2]


def validate_employer_code(raw: str) -> str:
    """Unified social credit code (GB 32100) of an employer, checksum included."""
    from stdnum.cn import uscc

    try:
        return str(uscc.validate(raw))
    except StdnumError:
        raise IdentifierError("employer code must be a valid 18-character unified social "
                              "credit code (GB 32100)") from None


ResidentId = Annotated[str, AfterValidator(validate_resident_id)]
EmployerCode = Annotated[str, AfterValidator(validate_employer_code)]
CnMobile = Annotated[str, AfterValidator(validate_cn_mobile)]
RegionCode = Annotated[str, AfterValidator(validate_region)]
# Any region of China (transfers by paper letter reach regions this platform does not serve).
AnyRegionCode = Annotated[str, AfterValidator(validate_any_region)]
