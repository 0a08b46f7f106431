"""Business rule violations: they become rejection events, never exceptions on the wire."""
from __future__ import annotations


class RuleViolation(Exception):
    """A request the rules refuse; `rule` is a stable code, `reason` tells the person why."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason
