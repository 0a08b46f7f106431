"""Reimbursement amounts from versioned, effective-dated policy files (SPEC reimbursement 2-3)."""
from __future__ import annotations

import calendar
import tomllib
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

LOCATIONS = ("in_region", "remote_filed", "remote_unfiled")
FEN = Decimal("1")


class PolicyError(ValueError):
    """A policy file is wrong, or no policy covers a claim."""


@dataclass(frozen=True)
class Rule:
    insurance_type: str  # employee (also flexible workers) or resident
    hospital_level: int  # 1, 2, 3
    location: str
    deductible_fen: int
    ratio: Decimal
    annual_cap_fen: int


@dataclass(frozen=True)
class Override:
    """An effective-dated policy decision (emergency rules, epidemic coverage)."""

    id: str
    kind: str  # remote_same_as_local, epidemic_full_coverage, claim_extension
    starts: date
    ends: date
    months: int = 0

    def in_force(self, day: date) -> bool:
        return self.starts <= day <= self.ends


@dataclass(frozen=True)
class Policy:
    region: str
    version: str
    effective_from: date
    rules: tuple[Rule, ...]
    overrides: tuple[Override, ...]

    def rule(self, insurance_type: str, hospital_level: int, location: str) -> Rule:
        kind = "employee" if insurance_type == "flexible" else insurance_type
        for r in self.rules:
            if (r.insurance_type, r.hospital_level, r.location) == (kind, hospital_level,
                                                                     location):
                return r
        raise PolicyError(f"policy {self.region}/{self.version} has no rule for {kind}, "
                          f"level {hospital_level}, {location}")

    def overrides_on(self, day: date, kind: str) -> list[Override]:
        return [o for o in self.overrides if o.kind == kind and o.in_force(day)]


def _fen(yuan: str) -> int:
    return int((Decimal(yuan) * 100).quantize(FEN, rounding=ROUND_HALF_UP))


def load_policy(path: Path) -> Policy:
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    try:
        rules = tuple(
            Rule(r["insurance_type"], int(r["hospital_level"]), r["location"],
                 _fen(r["deductible_yuan"]), Decimal(r["ratio"]), _fen(r["annual_cap_yuan"]))
            for r in doc["rule"])
        overrides = tuple(
            Override(o["id"], o["kind"], date.fromisoformat(o["from"]),
                     date.fromisoformat(o["to"]), int(o.get("months", 0)))
            for o in doc.get("override", []))
        policy = Policy(doc["region"], doc["version"], date.fromisoformat(doc["effective_from"]),
                        rules, overrides)
    except (KeyError, ValueError, ArithmeticError) as exc:
        raise PolicyError(f"{path}: {exc!r}") from exc
    for r in rules:
        if r.location not in LOCATIONS or not Decimal(0) <= r.ratio <= Decimal(1):
            raise PolicyError(f"{path}: bad rule {r}")
    return policy


class PolicyBook:
    """Every version for a region; the one in force on the expense date decides."""

    def __init__(self, policies: list[Policy]) -> None:
        self.policies = sorted(policies, key=lambda p: p.effective_from)

    @classmethod
    def load(cls, folder: Path, region: str) -> PolicyBook:
        found = [load_policy(p) for p in sorted(folder.glob(f"{region}-*.toml"))]
        if not found:
            raise PolicyError(f"no policy file for region {region} in {folder}")
        return cls(found)

    def in_force(self, day: date) -> Policy:
        current = [p for p in self.policies if p.effective_from <= day]
        if not current:
            raise PolicyError(f"no policy in force on {day.isoformat()}")
        return current[-1]


@dataclass(frozen=True)
class ClaimFacts:
    insurance_type: str
    hospital_level: int
    location: str
    expense_date: date
    eligible_fen: int  # the part of the expense the catalogue covers
    deductible_used_fen: int = 0  # deductible already met this year
    paid_this_year_fen: int = 0  # reimbursed this year, towards the cap
    epidemic_patient: bool = False  # confirmed or suspected patient of a declared epidemic


@dataclass(frozen=True)
class Calculation:
    policy_version: str
    overrides: list[str]
    eligible_fen: int
    deductible_fen: int
    ratio: Decimal
    cap_remaining_fen: int
    payable_fen: int
    working: list[str] = field(default_factory=list)


def calculate(policy: Policy, claim: ClaimFacts) -> Calculation:
    """Deductible, then ratio, then the annual cap; every step written down."""
    applied: list[str] = []
    if claim.epidemic_patient:
        for o in policy.overrides_on(claim.expense_date, "epidemic_full_coverage"):
            applied.append(o.id)
            return Calculation(policy.version, applied, claim.eligible_fen, 0, Decimal(1),
                               claim.eligible_fen, claim.eligible_fen,
                               [f"override {o.id}: epidemic patient, costs fully covered"])
    location = claim.location
    if location != "in_region":
        for o in policy.overrides_on(claim.expense_date, "remote_same_as_local"):
            applied.append(o.id)
            location = "in_region"
    rule = policy.rule(claim.insurance_type, claim.hospital_level, location)
    deductible = max(0, min(rule.deductible_fen - claim.deductible_used_fen, claim.eligible_fen))
    base = Decimal(claim.eligible_fen - deductible)
    by_ratio = int((base * rule.ratio).quantize(FEN, rounding=ROUND_HALF_UP))
    cap_remaining = max(0, rule.annual_cap_fen - claim.paid_this_year_fen)
    payable = min(by_ratio, cap_remaining)
    working = [
        f"policy {policy.region}/{policy.version}, rule {rule.insurance_type} level "
        f"{rule.hospital_level} {rule.location}" + (f" (overrides {applied})" if applied else ""),
        f"eligible {claim.eligible_fen / 100:.2f} - deductible {deductible / 100:.2f}"
        f" = {base / 100:.2f}",
        f"{base / 100:.2f} x ratio {rule.ratio} = {by_ratio / 100:.2f}",
        f"cap remaining {cap_remaining / 100:.2f} -> payable {payable / 100:.2f}",
    ]
    return Calculation(policy.version, applied, claim.eligible_fen, deductible, rule.ratio,
                       cap_remaining, payable, working)


def epidemic_coverage(book: PolicyBook, treated_from: date) -> Override | None:
    """The declared-epidemic override covering a treatment that started that day, if any
    [001]: such patients' costs are borne in full, with no claim."""
    try:
        overrides = book.in_force(treated_from).overrides_on(treated_from,
                                                            "epidemic_full_coverage")
    except PolicyError:
        return None
    return overrides[0] if overrides else None


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return day.replace(year=year, month=month,
                       day=min(day.day, calendar.monthrange(year, month)[1]))


def claim_deadline(book: PolicyBook, expense_date: date) -> tuple[date, list[str]]:
    """One year from the expense [004], extended by any emergency extension in force when the
    year runs out [002]; returns the deadline and the overrides that moved it."""
    deadline = add_months(expense_date, 12)
    try:
        policy = book.in_force(deadline)
    except PolicyError:
        return deadline, []
    applied = []
    for o in policy.overrides_on(deadline, "claim_extension"):
        deadline = add_months(deadline, o.months)
        applied.append(o.id)
    return deadline, applied
