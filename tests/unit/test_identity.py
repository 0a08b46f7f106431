"""Resident ID, mobile and region rules."""
from datetime import date

import pytest
from pydantic import ValidationError

from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.identity import (
    IdentifierError,
    check_resident_id,
    same_province,
    validate_cn_mobile,
    validate_region,
)


def test_valid_id_with_x_check_character() -> None:
    check = check_resident_id("11010519491231002x")
    assert check.number == "11010519491231002X"
    assert check.birth_date == date(1949, 12, 31)
    assert check.warnings == []


def test_bad_checksum_is_an_error() -> None:
    with pytest.raises(IdentifierError, match="checksum"):
        check_resident_id("110105194912310021")


def test_bad_birth_date_is_an_error() -> None:
    # 1949-13-31 with a correct check character for those digits
    from stdnum.cn import ric

    body = "11010519491331002"
    with pytest.raises(IdentifierError, match="birth date"):
        check_resident_id(body + ric.calc_check_digit(body + "0"))


def test_birth_date_in_future_is_an_error() -> None:
    from stdnum.cn import ric

    body = "21020220990101001"
    with pytest.raises(IdentifierError, match="future"):
        check_resident_id(body + ric.calc_check_digit(body + "0"), today=date(2026, 11, 23))


def test_county_newer_than_birth_year_only_warns() -> None:
    # Baotou 150202 was coded after 1975; the person exists and must be accepted.
    check = check_resident_id("150202197506070048")
    assert check.birth_date == date(1975, 6, 7)
    assert check.warnings and "150202" in check.warnings[0]


@pytest.mark.parametrize("raw", ["12345", "1101051949123100AX", ""])
def test_malformed_ids(raw: str) -> None:
    with pytest.raises(IdentifierError):
        check_resident_id(raw)


def test_contract_names_the_field_and_rule() -> None:
    with pytest.raises(ValidationError) as err:
        EnrollmentApplicationSubmitted.model_validate({
            "application_id": "A1", "person_id": "110105194912310021", "name": "王伟",
            "insurance_type": "resident", "mobile": "13800138000", "channel": "wechat",
            "region_code": "210200", "submitted_at": "2026-11-01T10:00:00+08:00"})
    assert err.value.errors()[0]["loc"] == ("person_id",)
    assert "checksum" in err.value.errors()[0]["msg"]


def test_mobiles() -> None:
    assert validate_cn_mobile("+86 138 0013 8000") == "13800138000"
    for bad in ("12800138000", "1380013800", "02188888888", "abc"):
        with pytest.raises(IdentifierError):
            validate_cn_mobile(bad)


def test_regions() -> None:
    assert validate_region("371000") == "371000"
    with pytest.raises(IdentifierError, match="not a served region"):
        validate_region("110000")
    assert same_province("371000", "370100")
    assert not same_province("210200", "370100")
