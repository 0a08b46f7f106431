"""Set-based handlers: how a batch is grouped keeps each key's order."""
from __future__ import annotations

from typing import Any

from shared.messaging.consumer import batch_handler, plan_groups


@batch_handler
async def apply_all(items: list[Any]) -> None: ...


@batch_handler
async def pay_all(items: list[Any]) -> None: ...


async def one(ctx: Any, env: Any, payload: Any) -> None: ...


def test_a_type_is_one_group_whatever_other_keys_do_between() -> None:
    plan = plan_groups([(0, b"A", apply_all), (1, b"B", pay_all), (2, b"C", apply_all),
                        (3, b"D", pay_all)])
    assert plan == [(apply_all, [0, 2]), (pay_all, [1, 3])]


def test_a_keys_later_event_never_moves_before_its_earlier_one() -> None:
    # A's payment (1) comes after A's application (0), and A's second application (2) after
    # the payment: a group of its own, which C's application joins.
    plan = plan_groups([(0, b"A", apply_all), (1, b"A", pay_all), (2, b"A", apply_all),
                        (3, b"C", apply_all), (4, b"D", pay_all)])
    assert plan == [(apply_all, [0]), (pay_all, [1, 4]), (apply_all, [2, 3])]


def test_plain_handlers_stay_in_place_and_hold_their_key() -> None:
    plan = plan_groups([(0, b"A", apply_all), (1, b"A", one), (2, b"B", one),
                        (3, b"A", apply_all), (4, b"B", apply_all)])
    assert plan == [(apply_all, [0]), (one, [1]), (one, [2]), (apply_all, [3, 4])]


def test_an_event_without_a_key_waits_for_everything_before_it() -> None:
    plan = plan_groups([(0, b"A", apply_all), (1, b"B", pay_all), (2, None, apply_all)])
    assert plan == [(apply_all, [0]), (pay_all, [1]), (apply_all, [2])]
