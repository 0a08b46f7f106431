"""SMS encoding rules: Chinese text as UCS-2, 70 characters single, 67 per concatenated part."""
from __future__ import annotations

from dataclasses import dataclass

UCS2 = 8  # SMPP data_coding for UCS-2 (ISO/IEC 10646)
UDHI = 0x40  # esm_class bit: the message starts with a user data header
SINGLE_LIMIT = 70  # UTF-16 code units in one 140-octet message
PART_LIMIT = 67  # 140 octets less the 6-octet concatenation header, in code units


@dataclass(frozen=True)
class SmsPart:
    payload: bytes  # user data header (if any) followed by UTF-16-BE text
    esm_class: int
    text: str


def encode_ucs2(text: str, reference: int) -> list[SmsPart]:
    """Split a message into SMPP short_message payloads; `reference` ties the parts together.

    Lengths count UTF-16 code units, and a part never ends inside a surrogate pair.
    """
    units = text.encode("utf-16-be")
    if len(units) // 2 <= SINGLE_LIMIT:
        return [SmsPart(units, 0, text)]
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode("utf-16-be")) // 2
        if size + width > PART_LIMIT:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    chunks.append("".join(current))
    if len(chunks) > 255:
        raise ValueError("message too long for concatenated SMS (255 parts)")
    ref = reference & 0xFF
    return [
        SmsPart(bytes([5, 0, 3, ref, len(chunks), i]) + chunk.encode("utf-16-be"), UDHI, chunk)
        for i, chunk in enumerate(chunks, start=1)
    ]


def decode_part(payload: bytes, esm_class: int) -> tuple[tuple[int, int, int] | None, str]:
    """Inverse of encode_ucs2 for one part: ((ref, total, seq) or None, text)."""
    if esm_class & UDHI:
        header_len = payload[0] + 1
        header = payload[1:header_len]
        concat = None
        if len(header) >= 5 and header[0] == 0 and header[1] == 3:
            concat = (header[2], header[3], header[4])
        return concat, payload[header_len:].decode("utf-16-be")
    return None, payload.decode("utf-16-be")


class Receipt(tuple[str, str]):
    """(message id, stat) as the SMSC reported them, and the handset the receipt is about (the
    deliver_sm's source address): it links a receipt whose submit response was lost to its
    message. Still a pair, so code that only wants (id, stat) unpacks it as one."""

    handset: str | None

    def __new__(cls, message_id: str, stat: str, handset: str | None = None) -> Receipt:
        receipt = super().__new__(cls, (message_id, stat))
        receipt.handset = handset
        return receipt


def parse_delivery_receipt(text: str) -> tuple[str, str] | None:
    """(message id, state) from an SMSC receipt 'id:.. sub:.. stat:DELIVRD ..', else None."""
    fields = {}
    for token in text.replace("submit date:", "submit_date:").replace(
            "done date:", "done_date:").split():
        if ":" in token:
            key, _, value = token.partition(":")
            fields[key.lower()] = value
    if "id" not in fields or "stat" not in fields:
        return None
    return fields["id"], fields["stat"].upper()


# SMSC final states and what they mean for the person's message.
RECEIPT_STATES = {
    "DELIVRD": "delivered",
    "EXPIRED": "expired",
    "DELETED": "failed",
    "UNDELIV": "undeliverable",
    "REJECTD": "rejected",
    "UNKNOWN": "unknown",
    "ACCEPTD": "accepted",
    "ENROUTE": "enroute",
}


FAILED_STATES = ("undeliverable", "expired", "rejected", "failed")


def overall_delivery_state(part_states: list[str]) -> str:
    """One SMS is delivered when every part is; any failed part fails it."""
    if not part_states:
        return "submitted"
    for state in part_states:
        if state in FAILED_STATES:
            return state
    if all(state == "delivered" for state in part_states):
        return "delivered"
    return "submitted"


# Receipt states that prove the SMSC took the part (and, for 'delivered', the handset got it).
HANDED_OVER_STATES = ("delivered", "accepted")


def parts_needed(body: str) -> int:
    """How many SMS parts the message goes out as (the reference does not change the count)."""
    return len(encode_ucs2(body, 0))


def receipts_show_sent(part_states: list[str], parts: int) -> bool:
    """An 'unknown' SMS counts as sent once the SMSC's receipts account for every part of it,
    each delivered or accepted: resending it would message the person twice. Fewer parts
    accounted for, or one failed, leaves it to an operator."""
    return len(part_states) >= parts > 0 and all(
        state in HANDED_OVER_STATES for state in part_states)
