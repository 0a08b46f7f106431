"""Personal data never reaches a log line unmasked."""
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from shared.observability.logging import configure_logging, mask_personal_data
from shared.observability.masking import (
    is_name_key,
    mask_text,
    mask_value,
    masking_names,
    names_in_bytes,
)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging binds the captured stderr: put the defaults back after the test, or
    later tests would log to a closed file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_mask_text_patterns() -> None:
    text = "id 21020219800101123X mobile 13812345678 mail zhang.san@example.cn"
    assert mask_text(text) == (
        "id 2102**********123X mobile 138****5678 mail z***@example.cn")


@pytest.mark.parametrize("written", [
    "13812345678", "138 1234 5678", "138-1234-5678", "+86 138 1234 5678", "+86-138-1234-5678",
    "+8613812345678", "+86 13812345678", "0086 138 1234 5678", "(+86) 138-1234-5678",
    "86-13812345678",
])
def test_mobiles_written_any_common_way(written: str) -> None:
    masked = mask_text(f"联系电话 {written}，请回电")
    assert masked == "联系电话 138****5678，请回电"


@pytest.mark.parametrize("written, shown", [
    ("370102199001011234", "3701**********1234"),
    ("21020219800101123x", "2102**********123x"),
    ("370102 19900101 1234", "3701**********1234"),
    ("370102-19900101-123X", "3701**********123X"),
    # A mistyped check digit is still a person's number.
    ("370102199001011235", "3701**********1235"),
])
def test_eighteen_digit_ids(written: str, shown: str) -> None:
    assert mask_text(f"身份证号{written}已登记") == f"身份证号{shown}已登记"


def test_fifteen_digit_first_generation_ids() -> None:
    # 6-digit area, YYMMDD (1971-09-23), 3-digit sequence: no check digit.
    assert mask_text("旧证 110105710923582 换领") == "旧证 1101********582 换领"
    assert mask_text("id=370102850228123;") == "id=3701********123;"
    assert mask_text("id=370102850229123;") == "id=370102850229123;"  # 1985 had no 29 Feb


@pytest.mark.parametrize("text", [
    "amount 12345678.90 yuan, 1380000 fen, 138,000.00",  # amounts
    "2026-11-24 13:45:00 20261124 2026/11/24",  # dates and times
    "settlement 202611240000123456",  # 18 digits whose 7th-14th are not a date
    "settlement 210202209912310001",  # ... a date in the future is no birth date
    "settlement 210202199002300001",  # ... 30 February is no date
    "number 202611241234567",  # 15 digits whose YYMMDD is not a date
    "card 6222021234567890123 offset 1733480000000",  # 19 and 13 digits
    "order 1381234567890",  # a 13-digit number that starts like a mobile
    "ref APP-370102199001011234X",  # part of a longer code
])
def test_no_false_positives(text: str) -> None:
    assert mask_text(text) == text


def test_conservative_masking_is_documented_behaviour() -> None:
    # An 18-digit number of area + a past date + 4 digits is exactly an ID's shape: masked,
    # whatever it really is (deploy/RUNBOOK.md, "Masking").
    assert mask_text("settlement 210202202611010001") == "settlement 2102**********0001"


def test_labelled_names_in_free_text() -> None:
    assert mask_text("姓名：张三丰，联系人: 李四") == "姓名：张**，联系人: 李*"


def test_relatives_and_agents_by_field_even_nested() -> None:
    event = {"person_id": "370102199001011234", "relative_name": "李四",
             "agent": {"agent_name": "王五", "mobile": "139 1234 5678"},
             "family": {"members": [{"name": "赵六", "relationship": "child"}],
                        "family_member_names": ["孙七", "周八"]},
             "disease_name": "高血压", "place_name": "大连市"}
    out = mask_value(event)
    assert out["relative_name"] == "李*"
    assert out["agent"] == {"agent_name": "王*", "mobile": "139****5678"}
    assert out["family"]["members"][0]["name"] == "赵*"
    assert out["family"]["family_member_names"] == ["孙*", "周*"]
    # Place and disease names are not people's: kept readable.
    assert out["disease_name"] == "高血压" and out["place_name"] == "大连市"


@pytest.mark.parametrize("key, is_name", [
    ("relative_name", True), ("guardian_name", True), ("family_member_names", True),
    ("bank_account_holder_name", True), ("name", True), ("disease_name", False),
    ("place_name", False), ("region_name", False), ("service_name", False), (None, False),
])
def test_name_keys(key: str | None, is_name: bool) -> None:
    assert is_name_key(key) is is_name


def test_names_the_structure_carries_are_masked_in_its_free_text() -> None:
    out = mask_value({"name": "张三丰", "relative_name": "欧阳娜娜",
                      "reason": "申请人张三丰为欧阳娜娜申请家庭共济；三丰已参保"})
    assert out["reason"] == "申请人张**为欧***申请家庭共济；**已参保"


def test_scope_masks_an_events_names_in_any_text_logged_while_it_is_handled() -> None:
    with masking_names(["陈静"]):
        assert mask_text("rejected: 陈静 already enrolled") == "rejected: 陈* already enrolled"
    assert mask_text("rejected: 陈静 already enrolled") == "rejected: 陈静 already enrolled"


def test_a_one_character_name_masks_nothing_else() -> None:
    assert mask_text("王先生 王府井", ["王"]) == "王先生 王府井"


def test_names_read_from_raw_and_truncated_messages() -> None:
    whole = json.dumps({"data": {"name": "王五", "relative_name": "李四"}}).encode()
    assert names_in_bytes(whole) == {"王五", "李四"}
    truncated = '{"data": {"relative_name": "李四", "name": "王五", "mobile": "1381'.encode()
    assert names_in_bytes(truncated) == {"王五", "李四"}
    assert names_in_bytes(b"\xff not json at all") == set()


def test_an_oversized_name_absent_from_the_text_costs_no_pattern(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A refused message with a 100,000-character "name": compiling it into the names pattern
    # took seconds per refusal and held the worker's loop (the fuzz test's dead letters lagged).
    from shared.observability import masking
    compiled: list[tuple[str, ...]] = []
    real = masking._names_pattern
    monkeypatch.setattr(masking, "_names_pattern",
                        lambda variants: compiled.append(variants) or real(variants))
    huge = "陈" * 100_000
    raw = json.dumps({"data": {"name": huge}}, ensure_ascii=False).encode()
    assert mask_text("unauthenticated: signature does not match", names_in_bytes(raw)) \
        == "unauthenticated: signature does not match"
    assert compiled == []
    # A name the text does contain is still masked, beside the huge one.
    assert mask_text("申请人张三丰已参保", {huge, "张三丰"}) == "申请人张**已参保"
    assert compiled == [("三丰", "张三丰")]


def test_processor_masks_nested_values_and_names() -> None:
    event = {"event": "applied 370102199001011234", "person": {"name": "张三丰",
             "mobile": "+8613912345678", "contacts": ["a.b@c.cn"]}, "count": 3}
    out = mask_personal_data(None, "info", event)
    dumped = json.dumps(out, ensure_ascii=False)
    assert "370102199001011234" not in dumped and "3701**********1234" in dumped
    assert "13912345678" not in dumped and "139****5678" in dumped
    assert "a.b@c.cn" not in dumped
    assert out["person"]["name"] == "张**"
    assert out["count"] == 3


def test_processor_masks_a_name_given_in_one_field_in_the_others() -> None:
    out = mask_personal_data(None, "warning", {
        "event": "refused", "relative_name": "李四", "detail": "李四 is not a close relative"})
    assert out["detail"] == "李* is not a close relative"


def test_configured_logging_masks_structlog_and_stdlib(  # type: ignore[no-untyped-def]
        capsys, restore_logging) -> None:
    configure_logging("json", "INFO")
    structlog.get_logger().info("received", person_id="21020219800101123X", to="13812345678")
    logging.getLogger("aiokafka").warning("payload %s", "zhang@example.cn 21020219800101123X")
    with masking_names(["陈静"]):
        logging.getLogger("faust").warning("handler said %s", "陈静 138-1234-5678")
    err = capsys.readouterr().err
    assert "21020219800101123X" not in err and "13812345678" not in err
    assert "zhang@example.cn" not in err
    assert "2102**********123X" in err and "138****5678" in err
    assert "陈静" not in err and "138-1234-5678" not in err
