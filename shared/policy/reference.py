"""Policy book reference data: designated institutions by code, agencies' postal addresses."""
from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.policy.book import SHIPPED_DIR
from shared.policy.errors import PolicyError

# A mainland postcode: six digits, read by the post office before the address.
POSTCODE = re.compile(r"^\d{6}$")


@dataclass(frozen=True)
class Institution:
    code: str
    name: str
    region: str
    level: int | None = None


@dataclass(frozen=True)
class Agency:
    region: str
    name: str
    postcode: str
    postal_address: str
    recipient: str

    @property
    def mailing_address(self) -> str:
        """As written on an envelope: postcode, address, recipient."""
        return f"{self.postcode} {self.postal_address} {self.recipient}（收）"


@dataclass(frozen=True)
class Reference:
    """Every institution of every region in the folders (a person treated elsewhere is told
    the name of that hospital too) and the agencies' addresses by region."""

    institutions: dict[str, Institution]
    agencies: dict[str, Agency]

    def institution_name(self, code: str) -> str | None:
        found = self.institutions.get(code)
        return found.name if found else None

    @classmethod
    def load(cls, dirs: Sequence[Path] = (SHIPPED_DIR,)) -> Reference:
        """`reference/*.toml` under each policy folder; a wrong file names itself."""
        institutions: dict[str, Institution] = {}
        agencies: dict[str, Agency] = {}
        for folder in dirs:
            for path in sorted((folder / "reference").glob("*.toml")):
                try:
                    doc = tomllib.loads(path.read_text(encoding="utf-8"))
                except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                    raise PolicyError(f"{path}: {exc}") from exc
                region = doc.get("region")
                if not isinstance(region, str) or not re.fullmatch(r"\d{6}", region):
                    raise PolicyError(f"{path}: region must be a 6-digit GB/T 2260 code")
                if "agency" in doc:
                    agencies[region] = _agency(doc["agency"], region, path)
                for i, raw in enumerate(doc.get("institution", [])):
                    found = _institution(raw, region, f"{path} institution[{i}]")
                    if found.code in institutions:
                        raise PolicyError(f"{path}: institution {found.code} is listed twice")
                    institutions[found.code] = found
        return cls(institutions, agencies)


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(f"{where}: {key} is required")
    return value.strip()


def _institution(raw: Any, region: str, where: str) -> Institution:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: an [[institution]] is a table")
    level = raw.get("level")
    if level is not None and level not in (1, 2, 3):
        raise PolicyError(f"{where}: level must be 1, 2 or 3")
    return Institution(_text(raw, "code", where), _text(raw, "name", where), region, level)


def _agency(raw: Any, region: str, path: Path) -> Agency:
    where = f"{path} [agency]"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: must be a table")
    postcode = _text(raw, "postcode", where)
    if not POSTCODE.match(postcode):
        raise PolicyError(f"{where}: postcode must be six digits, found {postcode!r}")
    return Agency(region, _text(raw, "name", where), postcode,
                  _text(raw, "postal_address", where), _text(raw, "recipient", where))
