"""One policy book for every service: effective-dated, per-region policy files and their meaning.

Files (format in shared/policies/README.md): `shared/policies/<region>-<version>.toml` are the
versions shipped and loaded by default (figures and standing measures, no emergency measure);
`shared/policies/examples/` holds the seeds' emergency measures, loaded only when an agency
adds the folder (MEDINS_POLICY_DIRS). Pure: no I/O beyond reading the files.

API (every lookup is by the day of the fact, never today):

    PolicyBook.load(region, dirs=(SHIPPED_DIR,)) -> PolicyBook     # PolicyError names file+key
    folders(policy_dir, extra="") -> list[Path]                     # shipped + MEDINS_POLICY_DIRS
    BookCache(region, dirs).refresh() -> (changed, error)           # re-read on file change

    book.in_force(day) -> PolicyVersion                # raises NoPolicyInForce(region, day)
    book.version_on(day) -> PolicyVersion | None
    book.gaps(start, end) -> list[(first, last)]       # days without a version in force
    book.covered_until(day) -> date | None;  book.days_left(today) -> int
    book.measure(kind, day) -> Measure | None;  book.measures_on(day) -> list[Measure]

    # Each returns Applied(value, measure_id, kind, notice, policy_version); .record() is
    # what a decision stores. Standing kinds raise NoPolicyInForce on a day without a version.
    book.claim_validity(expense_date) -> Applied[int]                       # months [004]
    book.claim_extension(day) -> Applied[int] | None                        # months [002]
    book.claim_deadline(expense_date) -> (date, list[Applied[int]])
    book.accident_filing_limits(day) -> Applied[AccidentFilingLimits]       # [002 十三]
    book.chronic_change_rule(day) -> Applied[ChronicChangeRule]             # [002 六]
    book.recognition_postponement(day) -> Applied[RecognitionPostponement] | None  # [002 八]
    book.prescription_limit(day, disease=None) -> Applied[int]              # months [000, 002]
    book.epidemic_coverage(day) -> Applied[None] | None                     # [001]
    book.remote_same_as_local(day) -> Applied[None] | None                  # [001]
    book.intra_province_without_filing(day) -> Applied[None] | None         # [003 Shandong]
    PolicyVersion.rule(type, level, location, filing_level=None) -> Rule    # FILING_LEVELS
    book.transfer_deadlines(day) -> Applied[TransferDeadlines]              # [003]

    calculate(book, ClaimFacts) -> Calculation         # reimbursement figures, their meaning
    AnnualTotals(line, year, claims/settled paid and deductible)  # a benefit line's year

Meanings (shared.policy.measures): Limit.due(start, add_working_days), AccidentFilingLimits.limit(
in_city), ChronicChangeRule.effective_on(requested_on, reimbursed_this_month) / .allows(kind) /
.temporary_until, RecognitionPostponement.is_urgent(disease) / .recognition_from(applied_on,
disease), TransferDeadlines.total(same_province) / .legs(same_province), add_months.
"""
from shared.policy.book import (
    EXAMPLES_DIR,
    FILING_LEVELS,
    KINDS,
    SHIPPED_DIR,
    Applied,
    BookCache,
    Measure,
    PolicyBook,
    PolicyVersion,
    Rule,
    folders,
)
from shared.policy.errors import NoPolicyInForce, PolicyError
from shared.policy.measures import (
    AccidentFilingLimits,
    ChronicChangeRule,
    Limit,
    PrescriptionLimits,
    RecognitionPostponement,
    TransferDeadlines,
    add_months,
    first_of_next_month,
)
from shared.policy.reimbursement import AnnualTotals, Calculation, ClaimFacts, calculate

__all__ = [
    "EXAMPLES_DIR", "FILING_LEVELS", "KINDS", "SHIPPED_DIR", "AccidentFilingLimits",
    "AnnualTotals", "Applied", "BookCache",
    "Calculation", "ChronicChangeRule", "ClaimFacts", "Limit", "Measure", "NoPolicyInForce",
    "PolicyBook", "PolicyError", "PolicyVersion", "PrescriptionLimits",
    "RecognitionPostponement", "Rule", "TransferDeadlines", "add_months", "calculate",
    "first_of_next_month", "folders",
]
