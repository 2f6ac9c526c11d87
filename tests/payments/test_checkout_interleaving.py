"""Money edge: an earlier checkout's order must not delete the same user's newer checkout.

Real Redis and MongoDB (tests/conftest.py). The interleaving, made deterministic: checkout A is
read (the pay request has it), the user checks out again (B replaces A in Redis), then A's order
is placed and A is forgotten. Deleting by key alone took B with it; the compare-and-delete (a Lua
script comparing checkout ids) keeps B.
"""

import pytest

from persistence.shop import CheckoutMissing
from tests.persistence.test_shop import World


async def test_an_older_checkouts_order_keeps_the_newer_checkout(world: World) -> None:
    shop = world.shop
    user = await world.user(balance=10_000)
    first_course, (first_policy,) = await world.course(1000)
    second_course, (second_policy,) = await world.course(2000)
    await shop.cart_add(user, first_course, first_policy)
    await shop.cart_add(user, second_course, second_policy)
    older = await shop.create_checkout(user, [first_course])  # the tab that is paying
    newer = await shop.create_checkout(user, [second_course])  # another tab checks out meanwhile

    placed = await shop.place_order(older, 1000, "older-tab")
    assert placed.created and placed.order["checkout_id"] == older.checkout_id

    current = await shop.checkout(user)
    assert current.checkout_id == newer.checkout_id
    assert [line.course_id for line in current.lines] == [second_course]
    # The bought course left the cart; the one still being checked out stayed.
    assert await shop.redis.hexists(shop.cart_key(user), str(second_course))
    assert not await shop.redis.hexists(shop.cart_key(user), str(first_course))


async def test_the_current_checkout_is_still_forgotten_once_ordered(world: World) -> None:
    shop = world.shop
    user = await world.user(balance=10_000)
    course, (policy,) = await world.course(1000)
    await shop.cart_add(user, course, policy)
    checkout = await shop.create_checkout(user, [course])
    await shop.place_order(checkout, 1000, "only-tab")
    with pytest.raises(CheckoutMissing):
        await shop.checkout(user)
