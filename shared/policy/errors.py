"""Errors of the policy book: a wrong file, or no policy in force on a day."""
from __future__ import annotations

from datetime import date


class PolicyError(ValueError):
    """A policy file is wrong (the message names the file and the key), or a rule is missing."""


class NoPolicyInForce(PolicyError):
    """No policy version of `region` covers `day`: nothing may be computed for that day with
    another period's figures; the decision waits until the agency adds the policy."""

    def __init__(self, region: str, day: date) -> None:
        self.region, self.day = region, day
        super().__init__(f"no policy in force for region {region} on {day.isoformat()}")
