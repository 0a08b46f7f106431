"""Personal data never reaches a log line unmasked."""
import json
import logging

import structlog

from shared.observability.logging import configure_logging, mask_personal_data
from shared.observability.masking import mask_text


def test_mask_text_patterns() -> None:
    text = "id 21020219800101123X mobile 13812345678 mail zhang.san@example.cn"
    assert mask_text(text) == (
        "id 2102**********123X mobile 138****5678 mail z***@example.cn")


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


def test_configured_logging_masks_structlog_and_stdlib(capsys) -> None:  # type: ignore[no-untyped-def]
    configure_logging("json", "INFO")
    structlog.get_logger().info("received", person_id="21020219800101123X", to="13812345678")
    logging.getLogger("aiokafka").warning("payload %s", "zhang@example.cn 21020219800101123X")
    err = capsys.readouterr().err
    assert "21020219800101123X" not in err and "13812345678" not in err
    assert "zhang@example.cn" not in err
    assert "2102**********123X" in err and "138****5678" in err
