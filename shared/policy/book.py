"""The policy book: versioned, effective-dated, per-region policy files and their lookups."""
from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Generic, TypeVar

from shared.policy.errors import NoPolicyInForce, PolicyError
from shared.policy.measures import (
    AccidentFilingLimits,
    ChronicChangeRule,
    Limit,
    PrescriptionLimits,
    RecognitionPostponement,
    TransferDeadlines,
    claim_deadline,
)

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "policies"
EXAMPLES_DIR = SHIPPED_DIR / "examples"
LOCATIONS = ("in_region", "remote_filed", "remote_unfiled")
# The benefit level a remote filing gives (an emergency admission counts as temporary [003]):
# a remote_filed rule may name one; a level without its own rule takes the plain remote_filed.
FILING_LEVELS = ("temporary", "long_term", "referral")
ANY_REGION = "*"
T = TypeVar("T")


@dataclass(frozen=True)
class Rule:
    """Reimbursement figures for one insurance type x hospital level x location."""

    insurance_type: str  # employee (flexible workers too) or resident
    hospital_level: int  # 1, 2, 3
    location: str  # in_region, remote_filed, remote_unfiled
    deductible_fen: int
    ratio: Decimal
    annual_cap_fen: int
    filing_level: str | None = None  # only for remote_filed: temporary, long_term, referral


@dataclass(frozen=True)
class Measure:
    """One effective-dated measure: a standing one belongs to a version and spans it; a
    temporary one (an emergency notice) comes from a measure file with its own dates and,
    while in force, takes precedence over the standing measure of the same kind."""

    id: str
    kind: str
    region: str
    starts: date
    ends: date
    notice: str
    value: Any
    standing: bool
    source: str

    def in_force(self, day: date) -> bool:
        return self.starts <= day <= self.ends


@dataclass(frozen=True)
class Applied(Generic[T]):
    """What a decision used: the measure's meaning (`value`) and where it came from."""

    value: T
    measure_id: str
    kind: str
    notice: str
    policy_version: str | None

    def record(self) -> dict[str, str | None]:
        return {"measure": self.measure_id, "kind": self.kind, "notice": self.notice,
                "policy_version": self.policy_version}


@dataclass(frozen=True)
class PolicyVersion:
    region: str
    version: str
    effective_from: date
    effective_to: date
    notice: str
    rules: tuple[Rule, ...]
    measures: tuple[Measure, ...]
    source: str

    def covers(self, day: date) -> bool:
        return self.effective_from <= day <= self.effective_to

    def rule(self, insurance_type: str, hospital_level: int, location: str,
             filing_level: str | None = None) -> Rule:
        """The rule for the filing's benefit level when the version gives one, else the
        plain rule for the location."""
        kind = "employee" if insurance_type == "flexible" else insurance_type
        found = {r.filing_level: r for r in self.rules
                 if (r.insurance_type, r.hospital_level, r.location) == (kind, hospital_level,
                                                                         location)}
        rule = found.get(filing_level) or found.get(None)
        if rule is None:
            raise PolicyError(f"policy {self.region}/{self.version} has no rule for {kind}, "
                              f"level {hospital_level}, {location}")
        return rule


# --- measure kinds: how their parameters are read -------------------------------------------

def _int(params: Mapping[str, Any], key: str, where: str, minimum: int = 0) -> int:
    value = params.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise PolicyError(f"{where}: {key} must be a whole number >= {minimum}")
    return value


def _strings(params: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = params.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where}: {key} must be a list of codes")
    return tuple(value)


def _flag(params: Mapping[str, Any], where: str) -> None:
    if params:
        raise PolicyError(f"{where}: takes no parameters, found {', '.join(sorted(params))}")


def _claim_months(p: Mapping[str, Any], w: str) -> int:
    return _int(p, "months", w, 1)


def _accident(p: Mapping[str, Any], w: str) -> AccidentFilingLimits:
    return AccidentFilingLimits(Limit.parse(p.get("in_city"), f"{w}.in_city"),
                                Limit.parse(p.get("out_of_city"), f"{w}.out_of_city"))


def _chronic(p: Mapping[str, Any], w: str) -> ChronicChangeRule:
    deferred = p.get("deferred_if_reimbursed_this_month", True)
    if not isinstance(deferred, bool):
        raise PolicyError(f"{w}: deferred_if_reimbursed_this_month must be true or false")
    kinds = _strings(p, "institution_kinds", w) if "institution_kinds" in p else ("hospital",)
    return ChronicChangeRule(deferred, kinds)


def _postponement(p: Mapping[str, Any], w: str) -> RecognitionPostponement:
    return RecognitionPostponement(_int(p, "months", w, 1), _strings(p, "urgent", w))


def _prescription(p: Mapping[str, Any], w: str) -> PrescriptionLimits:
    by = p.get("by_disease", {})
    if not isinstance(by, Mapping) or not all(isinstance(v, int) and v > 0 for v in by.values()):
        raise PolicyError(f"{w}: by_disease is a table of disease code = months")
    return PrescriptionLimits(_int(p, "default_months", w, 1), dict(by))


def _transfer(p: Mapping[str, Any], w: str) -> TransferDeadlines:
    d = TransferDeadlines(*(_int(p, k, w, 1) for k in (
        "cross_province", "intra_province", "out_leg_cross_province", "in_leg_cross_province",
        "out_leg_intra_province", "in_leg_intra_province")))
    if d.out_leg_cross_province + d.in_leg_cross_province > d.cross_province or \
            d.out_leg_intra_province + d.in_leg_intra_province > d.intra_province:
        raise PolicyError(f"{w}: the two legs must fit in the total")
    return d


def _none(p: Mapping[str, Any], w: str) -> None:
    _flag(p, w)


@dataclass(frozen=True)
class MaternityMedical:
    """Childbirth medical costs: their own benefit line, with their own deductible, ratio and
    annual cap; they never use up the medical line's."""

    deductible_fen: int
    ratio: Decimal
    annual_cap_fen: int


def _maternity_medical(p: Mapping[str, Any], w: str) -> MaternityMedical:
    try:
        m = MaternityMedical(_fen(p["deductible_yuan"], w), Decimal(str(p["ratio"])),
                             _fen(p["annual_cap_yuan"], w))
    except (KeyError, InvalidOperation) as exc:
        raise PolicyError(f"{w}: maternity_medical needs deductible_yuan, ratio and "
                          f"annual_cap_yuan ({exc!r})") from exc
    if not Decimal(0) <= m.ratio <= Decimal(1):
        raise PolicyError(f"{w}: ratio must be between 0 and 1")
    return m


# kind -> (parameter reader, may be standing in a version, may be temporary in a measure file)
KINDS: dict[str, tuple[Callable[[Mapping[str, Any], str], Any], bool, bool]] = {
    "claim_validity": (_claim_months, True, True),
    "claim_extension": (_claim_months, False, True),
    "accident_filing": (_accident, True, True),
    "chronic_change": (_chronic, True, True),
    "recognition_postponement": (_postponement, False, True),
    "prescription_limit": (_prescription, True, True),
    "epidemic_full_coverage": (_none, False, True),
    "remote_same_as_local": (_none, False, True),
    "intra_province_without_filing": (_none, True, False),
    "maternity_medical": (_maternity_medical, True, False),
    "transfer_deadlines": (_transfer, True, True),
}

# Standing values used when a version file leaves a kind out. Each is labelled: where the
# notices give the normal rule it is cited, where they do not it says so.
DEFAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "claim_validity": ("004 零星报销有效期限为一年", {"months": 12}),
    "accident_filing": (
        "ASSUMED DEFAULT, not from a notice: notice 002 gives only the emergency limits and "
        "says they return to 'the normal limits' afterwards; replace with the agency's own",
        {"in_city": {"count": 3, "unit": "working_days"},
         "out_of_city": {"count": 3, "unit": "working_days"}}),
    "chronic_change": ("002 第六条 (the timing outside the emergency)",
                       {"deferred_if_reimbursed_this_month": True,
                        "institution_kinds": ["hospital"]}),
    "prescription_limit": ("ASSUMED DEFAULT (practice): one month outside long-prescription "
                           "rules; Dalian's files say 3 months [000]", {"default_months": 1}),
    "maternity_medical": ("ASSUMED DEFAULT (practice), not from a notice: childbirth costs "
                          "in the catalogue in full, up to 5000.00 a year; replace with the "
                          "agency's own", {"deductible_yuan": "0", "ratio": "1",
                                           "annual_cap_yuan": "5000"}),
    "transfer_deadlines": ("003 (15 / 9 working days); legs are national practice",
                           {"cross_province": 15, "intra_province": 9,
                            "out_leg_cross_province": 10, "in_leg_cross_province": 5,
                            "out_leg_intra_province": 6, "in_leg_intra_province": 3}),
}


# --- loading ----------------------------------------------------------------------------------

def _fen(yuan: Any, where: str) -> int:
    try:
        return int((Decimal(str(yuan)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except (InvalidOperation, ValueError) as exc:
        raise PolicyError(f"{where}: {yuan!r} is not an amount in yuan") from exc


def _date(doc: Mapping[str, Any], key: str, where: str) -> date:
    value = doc.get(key)
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise PolicyError(f"{where}: {key} must be a date YYYY-MM-DD, found {value!r}") from exc


def _measure(raw: Any, region: str, source: str, span: tuple[date, date] | None) -> Measure:
    where = source
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: a [[measure]] is a table")
    params = dict(raw)
    mid, kind, notice = params.pop("id", None), params.pop("kind", None), params.pop("notice", "")
    if not isinstance(mid, str) or not mid:
        raise PolicyError(f"{where}: id is required")
    where = f"{where} {mid}"
    if kind not in KINDS:
        raise PolicyError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    reader, standing_ok, temporary_ok = KINDS[kind]
    if span is None:  # a measure file: a temporary measure with its own dates
        if not temporary_ok:
            raise PolicyError(f"{where}: {kind} belongs in a version file")
        if "from" not in params or "to" not in params:
            raise PolicyError(f"{where}: a temporary measure needs from and to")
        starts, ends = _date(params, "from", where), _date(params, "to", where)
    else:
        if not standing_ok:
            raise PolicyError(f"{where}: {kind} is a temporary measure: put it in a measure "
                              "file (no version) with from and to")
        if "from" in params or "to" in params:
            raise PolicyError(f"{where}: a version's measure spans the version; dated "
                              "measures go in a measure file")
        starts, ends = span
    params.pop("from", None)
    params.pop("to", None)
    if ends < starts:
        raise PolicyError(f"{where}: to {ends} is before from {starts}")
    return Measure(mid, kind, region, starts, ends, str(notice), reader(params, where),
                   span is not None, source)


def _version(doc: Mapping[str, Any], region: str, where: str) -> PolicyVersion:
    version = doc.get("version")
    starts = _date(doc, "effective_from", where)
    if "effective_to" not in doc:
        raise PolicyError(f"{where}: effective_to is required (a version's figures must not "
                          "run on into a period they were not written for)")
    ends = _date(doc, "effective_to", where)
    if ends < starts:
        raise PolicyError(f"{where}: effective_to {ends} is before effective_from {starts}")
    rules: list[Rule] = []
    for i, r in enumerate(doc.get("rule", [])):
        at = f"{where} rule[{i}]"
        try:
            rule = Rule(str(r["insurance_type"]), int(r["hospital_level"]), str(r["location"]),
                        _fen(r["deductible_yuan"], at), Decimal(str(r["ratio"])),
                        _fen(r["annual_cap_yuan"], at), r.get("filing_level"))
        except (KeyError, InvalidOperation, ValueError, TypeError) as exc:
            raise PolicyError(f"{at}: {exc!r}") from exc
        if rule.location not in LOCATIONS or not Decimal(0) <= rule.ratio <= Decimal(1) \
                or rule.hospital_level not in (1, 2, 3):
            raise PolicyError(f"{at}: bad rule {rule}")
        if rule.filing_level is not None and (rule.location != "remote_filed"
                                              or rule.filing_level not in FILING_LEVELS):
            raise PolicyError(f"{at}: filing_level {rule.filing_level!r} needs location "
                              f"remote_filed and one of {', '.join(FILING_LEVELS)}")
        key = (rule.insurance_type, rule.hospital_level, rule.location, rule.filing_level)
        if any((o.insurance_type, o.hospital_level, o.location, o.filing_level) == key
               for o in rules):
            raise PolicyError(f"{at}: a second rule for {key}")
        rules.append(rule)
    if not rules:
        raise PolicyError(f"{where}: a version needs its reimbursement figures ([[rule]])")
    measures = [_measure(m, region, where, (starts, ends)) for m in doc.get("measure", [])]
    kinds = [m.kind for m in measures]
    for kind in set(kinds):
        if kinds.count(kind) > 1:
            raise PolicyError(f"{where}: two standing {kind} measures")
    for kind, (notice, params) in DEFAULTS.items():
        if kind not in kinds:
            measures.append(Measure(f"{region}-{version}:default-{kind}", kind, region, starts,
                                    ends, f"built-in default: {notice}",
                                    KINDS[kind][0](params, where), True, where))
    return PolicyVersion(region, str(version), starts, ends, str(doc.get("notice", "")),
                         tuple(rules), tuple(measures), where)


def _files(dirs: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for folder in dirs:
        if not folder.is_dir():
            raise PolicyError(f"policy folder {folder} does not exist")
        found.extend(sorted(folder.glob("*.toml")))
    return found


def signature(dirs: Sequence[Path]) -> str:
    """Changes when any policy file in the folders is added, removed or edited."""
    digest = hashlib.sha256()
    for path in _files(dirs):
        digest.update(str(path).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# --- the book -----------------------------------------------------------------------------------

class PolicyBook:
    """Every policy version and measure of one region; each lookup is by the day of the fact.

    Versions may not overlap; a day outside every version has no policy in force
    (`NoPolicyInForce`), and nothing is computed for it with another period's figures.
    """

    def __init__(self, region: str, versions: Sequence[PolicyVersion],
                 measures: Sequence[Measure] = (), sources: Sequence[str] = ()) -> None:
        self.region = region
        self.versions = sorted(versions, key=lambda v: v.effective_from)
        self.temporary = list(measures)
        self.sources = list(sources)
        for before, after in zip(self.versions, self.versions[1:], strict=False):
            if after.effective_from <= before.effective_to:
                raise PolicyError(f"{after.source}: version {after.version} "
                                  f"({after.effective_from}..) overlaps {before.version} "
                                  f"(..{before.effective_to}) in {before.source}")
        seen: dict[str, str] = {}
        for m in self.temporary + [m for v in self.versions for m in v.measures]:
            if m.id in seen and not m.standing:
                raise PolicyError(f"{m.source}: measure id {m.id} also in {seen[m.id]}")
            seen[m.id] = m.source
        for a in self.temporary:
            for b in self.temporary:
                if a is not b and a.kind == b.kind and a.starts == b.starts:
                    raise PolicyError(f"{b.source}: {a.id} and {b.id} are both {a.kind} from "
                                      f"{a.starts}; which one applies would be a guess")

    @classmethod
    def load(cls, region: str, dirs: Sequence[Path] = (SHIPPED_DIR,)) -> PolicyBook:
        """Every `*.toml` in the folders (not their subfolders) that names this region (or
        `region = "*"` for a measure file): a file with `version` is a version, one without is
        a file of temporary measures."""
        versions: list[PolicyVersion] = []
        measures: list[Measure] = []
        sources = []
        for path in _files(dirs):
            try:
                doc = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise PolicyError(f"{path}: {exc}") from exc
            file_region = doc.get("region")
            if file_region != region and not (file_region == ANY_REGION
                                               and "version" not in doc):
                continue
            sources.append(str(path))
            if "version" in doc:
                versions.append(_version(doc, region, str(path)))
            else:
                if "rule" in doc:
                    raise PolicyError(f"{path}: figures ([[rule]]) need a version")
                measures.extend(_measure(m, region, str(path), None)
                                for m in doc.get("measure", []))
        return cls(region, versions, measures, sources)

    # -- versions and gaps --

    def version_on(self, day: date) -> PolicyVersion | None:
        return next((v for v in self.versions if v.covers(day)), None)

    def in_force(self, day: date) -> PolicyVersion:
        """The version covering `day`; `NoPolicyInForce(region, day)` if none does."""
        version = self.version_on(day)
        if version is None:
            raise NoPolicyInForce(self.region, day)
        return version

    def gaps(self, start: date, end: date) -> list[tuple[date, date]]:
        """The runs of days in [start, end] without a version in force, as (first, last)."""
        gaps: list[tuple[date, date]] = []
        day = start
        for v in self.versions:
            if v.effective_to < day:
                continue
            if v.effective_from > end:
                break
            if v.effective_from > day:
                gaps.append((day, v.effective_from - timedelta(days=1)))
            day = v.effective_to + timedelta(days=1)
            if day > end:
                return gaps
        if day <= end:
            gaps.append((day, end))
        return gaps

    def covered_until(self, day: date) -> date | None:
        """The last day of the unbroken run of versions from `day`; None if `day` is a gap."""
        last = None
        for v in self.versions:
            if v.covers(day if last is None else last + timedelta(days=1)):
                last = v.effective_to
        return last

    def days_left(self, today: date) -> int:
        """Days with a policy in force from today on, today included (0: none today)."""
        last = self.covered_until(today)
        return 0 if last is None else (last - today).days + 1

    # -- measures --

    def measure(self, kind: str, day: date) -> Measure | None:
        """The measure of `kind` in force on `day`: a temporary one (latest start) before the
        standing one of the version in force."""
        temporary = [m for m in self.temporary if m.kind == kind and m.in_force(day)]
        if temporary:
            return max(temporary, key=lambda m: m.starts)
        version = self.version_on(day)
        if version is None:
            return None
        return next((m for m in version.measures if m.kind == kind), None)

    def _applied(self, measure: Measure, day: date) -> Applied[Any]:
        version = self.version_on(day)
        return Applied(measure.value, measure.id, measure.kind, measure.notice,
                       version.version if version else None)

    def _standing(self, kind: str, day: date) -> Applied[Any]:
        self.in_force(day)  # no version, no decision: never another period's rule
        found = self.measure(kind, day)
        assert found is not None  # every version carries a standing measure (or the default)
        return self._applied(found, day)

    def _optional(self, kind: str, day: date) -> Applied[Any] | None:
        found = self.measure(kind, day)
        return None if found is None else self._applied(found, day)

    def claim_validity(self, expense_date: date) -> Applied[int]:
        """Months a sporadic claim may be filed after the expense, by the version in force
        on the expense date [004]."""
        return self._standing("claim_validity", expense_date)

    def claim_extension(self, day: date) -> Applied[int] | None:
        """An emergency extension of claims and expired receipts, in months [002 第二条]."""
        return self._optional("claim_extension", day)

    def claim_deadline(self, expense_date: date) -> tuple[date, list[Applied[int]]]:
        """Last filing day of a claim: the validity in force on the expense date, plus an
        extension in force on the day the validity runs out."""
        validity = self.claim_validity(expense_date)
        base = claim_deadline(expense_date, validity.value)
        extension = self.claim_extension(base)
        if extension is None:
            return base, [validity]
        return claim_deadline(expense_date, validity.value, extension.value), \
            [validity, extension]

    def accident_filing_limits(self, day: date) -> Applied[AccidentFilingLimits]:
        """Limits for filing an accident injury admitted on `day` [002 第十三条]."""
        return self._standing("accident_filing", day)

    def chronic_change_rule(self, day: date) -> Applied[ChronicChangeRule]:
        """How a change of designated chronic-disease institution requested on `day` takes
        effect [002 第六条]; under an emergency measure `temporary_until` is its end."""
        applied = self._standing("chronic_change", day)
        found = self.measure("chronic_change", day)
        if found is not None and not found.standing:
            rule = applied.value
            applied = Applied(ChronicChangeRule(rule.deferred_if_reimbursed_this_month,
                                                rule.institution_kinds, found.ends),
                              applied.measure_id, applied.kind, applied.notice,
                              applied.policy_version)
        return applied

    def recognition_postponement(self, day: date) -> Applied[RecognitionPostponement] | None:
        """A postponement of chronic-disease recognition applied for on `day` [002 第八条]."""
        return self._optional("recognition_postponement", day)

    def prescription_limit(self, day: date, disease: str | None = None) -> Applied[int]:
        """Longest prescription, in months, for `disease` on `day` [000 十三, 002 第五条]. An
        emergency measure relaxes (放宽) the limit, never shortens it: where the standing rule
        allows more (Dalian's 3 months), the standing rule stays."""
        version = self.in_force(day)
        standing = next(m for m in version.measures if m.kind == "prescription_limit")
        chosen = self.measure("prescription_limit", day) or standing
        if chosen.value.months_for(disease) < standing.value.months_for(disease):
            chosen = standing
        return Applied(chosen.value.months_for(disease), chosen.id, chosen.kind, chosen.notice,
                       version.version)

    def epidemic_coverage(self, day: date) -> Applied[None] | None:
        """Full coverage of confirmed and suspected epidemic patients treated from `day` [001]."""
        return self._optional("epidemic_full_coverage", day)

    def remote_same_as_local(self, day: date) -> Applied[None] | None:
        """Remote treatment without filing reimbursed at the local ratio [001]."""
        return self._optional("remote_same_as_local", day)

    def maternity_medical(self, day: date) -> Applied[MaternityMedical]:
        """The childbirth medical costs line's figures in force on `day`."""
        return self._standing("maternity_medical", day)

    def intra_province_without_filing(self, day: date) -> Applied[None] | None:
        """Within the province a temporary trip to another city needs no filing: treated as
        filed at the temporary level [003 Shandong]."""
        return self._optional("intra_province_without_filing", day)

    def transfer_deadlines(self, day: date) -> Applied[TransferDeadlines]:
        """Statutory transfer deadlines for a transfer started on `day` [003]."""
        return self._standing("transfer_deadlines", day)

    def measures_on(self, day: date) -> list[Measure]:
        """Every measure in force on `day` (standing and temporary), for status and checks."""
        version = self.version_on(day)
        standing = list(version.measures) if version else []
        return [m for m in self.temporary if m.in_force(day)] + standing


def folders(policy_dir: Path | None, extra: str | Sequence[Path] = "") -> list[Path]:
    """The shipped (or configured) folder, then any extra folders (comma-separated); the word
    `examples` names the shipped examples wherever the package is installed."""
    extras = [EXAMPLES_DIR if p.strip() == "examples" else Path(p.strip())
              for p in extra.split(",") if p.strip()] if isinstance(extra, str) else list(extra)
    return [policy_dir or SHIPPED_DIR, *extras]


@dataclass
class BookCache:
    """Re-reads the book when its files change, keeping the last good one if a new file is
    wrong (the error is returned so the worker can say which file)."""

    region: str
    dirs: list[Path]
    book: PolicyBook = field(init=False)
    signature: str = field(init=False)

    def __post_init__(self) -> None:
        self.signature = signature(self.dirs)
        self.book = PolicyBook.load(self.region, self.dirs)

    def refresh(self) -> tuple[bool, PolicyError | None]:
        """(changed, error): changed when a new book was loaded."""
        try:
            current = signature(self.dirs)
            if current == self.signature:
                return False, None
            book = PolicyBook.load(self.region, self.dirs)
        except (PolicyError, OSError) as exc:
            return False, exc if isinstance(exc, PolicyError) else PolicyError(str(exc))
        self.book, self.signature = book, current
        return True, None
