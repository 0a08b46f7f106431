"""Outpatient chronic disease and family account mutual aid (SPEC enrollment 6 and 7)."""
from __future__ import annotations

from services.enrollment.domain.errors import RuleViolation
from services.enrollment.domain.model import InsuredStatus, Person
from shared.contracts.channels import ChronicDiseaseApplied, FamilyAidAuthorised

# Recognised without application (免申即享) when a hospital records the treatment [003].
AUTOMATIC_RECOGNITION = {
    "organ_transplant_anti_rejection": "organ_transplant_anti_rejection",
    "tumour_radiotherapy": "malignant_tumour_radiochemotherapy",
    "tumour_chemotherapy": "malignant_tumour_radiochemotherapy",
}


def check_chronic_application(cmd: ChronicDiseaseApplied, person: Person | None,
                              current_institution: str | None) -> None:
    if person is None or person.status != InsuredStatus.ACTIVE:
        raise RuleViolation("not_insured", "person_id: chronic-disease services need active "
                            "insurance here")
    if cmd.action == "change_institution":
        if current_institution is None:
            raise RuleViolation("not_recognised", f"disease: {cmd.disease} is not recognised "
                                "for this person; apply for recognition first")
        if current_institution == cmd.institution_code:
            raise RuleViolation("same_institution",
                                "institution_code: already the designated institution")


def family_aid_ends(status: InsuredStatus) -> bool:
    """Relatives spend from the holder's account only while the holder is insured here. (A
    death ends the authorisations on either side, holder or relative: see record of death.)"""
    return status in (InsuredStatus.SUSPENDED, InsuredStatus.TRANSFERRED_OUT)


def check_family_aid(cmd: FamilyAidAuthorised, person: Person | None, region: str) -> None:
    if person is None or person.status != InsuredStatus.ACTIVE or not person.has_personal_account:
        raise RuleViolation("no_personal_account", "person_id: only an insured employee with a "
                            "personal account can authorise family mutual aid")
    if cmd.relative_id == cmd.person_id:
        raise RuleViolation("self", "relative_id: must be another person")
    if cmd.relative_region[:2] != region[:2]:
        raise RuleViolation("other_province", "relative_region: the relative must be insured "
                            f"in the same province ({region[:2]})")
    if not cmd.commitment_signed or not cmd.id_photo_uploaded:
        raise RuleViolation("materials_missing", "commitment_signed and id_photo_uploaded: a "
                            "signed commitment and an ID photo are required")
