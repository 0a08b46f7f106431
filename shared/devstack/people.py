"""Realistic test and demo people: valid resident IDs and mobiles, never real persons."""
from __future__ import annotations

import random
from datetime import date

from stdnum.cn import ric

# County codes inside each served region, for IDs that look local.
COUNTY_BY_REGION = {"210200": "210202", "370100": "370102", "150200": "150202",
                    "371000": "371002", "330300": "330302"}
SURNAMES = "王李张刘陈杨赵黄周吴"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"


def resident_id(region: str = "210200", birth: date | None = None,
                rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    birth = birth or date(rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28))
    body = f"{COUNTY_BY_REGION.get(region, region)}{birth:%Y%m%d}{rng.randint(0, 999):03d}"
    return body + ric.calc_check_digit(body + "0")


def mobile(rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    return f"13{rng.randint(5, 9)}{rng.randint(0, 99_999_999):08d}"


def name(rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
