"""UCS-2 encoding and concatenation of Chinese SMS, and delivery receipt parsing."""
from services.notify.domain.sms import (
    PART_LIMIT,
    UCS2,
    UDHI,
    Receipt,
    decode_part,
    encode_ucs2,
    parse_delivery_receipt,
    parts_needed,
    receipts_show_sent,
)


def test_seventy_characters_fit_one_message() -> None:
    text = "医" * 70
    parts = encode_ucs2(text, 1)
    assert len(parts) == 1 and parts[0].esm_class == 0
    assert parts[0].payload == text.encode("utf-16-be") and len(parts[0].payload) == 140
    assert UCS2 == 8


def test_seventy_one_characters_become_two_parts_of_at_most_67() -> None:
    text = "参" * 71
    parts = encode_ucs2(text, 0x1A2)
    assert [len(p.text) for p in parts] == [67, 4]
    for seq, part in enumerate(parts, start=1):
        assert part.esm_class == UDHI
        assert part.payload[:6] == bytes([5, 0, 3, 0xA2, 2, seq])
        assert len(part.payload) <= 140
    assert "".join(decode_part(p.payload, p.esm_class)[1] for p in parts) == text


def test_surrogate_pairs_are_not_split() -> None:
    text = "报" * 66 + "𠀀" + "销" * 10  # U+20000 needs two UTF-16 code units
    parts = encode_ucs2(text, 7)
    assert parts[0].text == "报" * 66  # the pair would not fit in unit 67
    assert "".join(p.text for p in parts) == text
    assert all(len(p.text.encode("utf-16-be")) // 2 <= PART_LIMIT for p in parts)


def test_receipt_parsing() -> None:
    receipt = ("id:0a1b sub:001 dlvrd:001 submit date:2611230101 done date:2611230102 "
               "stat:DELIVRD err:000 text:")
    assert parse_delivery_receipt(receipt) == ("0a1b", "DELIVRD")
    assert parse_delivery_receipt("hello") is None


def test_a_receipt_names_its_handset_and_still_unpacks_as_a_pair() -> None:
    receipt = Receipt("0a1b", "DELIVRD", "13800000000")
    message_id, stat = receipt
    assert (message_id, stat, receipt.handset) == ("0a1b", "DELIVRD", "13800000000")
    assert receipt == ("0a1b", "DELIVRD") and Receipt("x", "ACCEPTD").handset is None


def test_an_unknown_sms_is_sent_only_when_receipts_account_for_every_part() -> None:
    assert parts_needed("参" * 70) == 1 and parts_needed("参" * 71) == 2
    assert receipts_show_sent(["delivered"], 1)
    assert receipts_show_sent(["accepted", "delivered"], 2)
    assert not receipts_show_sent(["delivered"], 2)  # a part's receipt is missing
    assert not receipts_show_sent(["delivered", "submitted"], 2)  # no receipt for it yet
    assert not receipts_show_sent(["delivered", "undeliverable"], 2)
    assert not receipts_show_sent([], 1)
