"""structlog set-up: JSON off a terminal, console on one, personal data always masked."""
from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from shared.observability.masking import mask_text, mask_value, names_in


def mask_personal_data(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: masks IDs, mobiles, emails and names in every key and value; a
    name given in one field (name=, relative_name=) is masked in the line's other texts too."""
    names = tuple(names_in(event_dict))
    return {key: mask_value(value, key, names) for key, value in event_dict.items()}


class _MaskingFormatter(logging.Formatter):
    """Masks stdlib records too (Faust, aiokafka), which may echo message contents."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def configure_logging(fmt: str = "auto", level: str = "INFO", service: str | None = None) -> None:
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_personal_data,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_MaskingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Library chatter (mode's "Starting..." and the like) only from WARNING up.
    root.setLevel(max(logging.WARNING, logging.getLevelName(level)))


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
