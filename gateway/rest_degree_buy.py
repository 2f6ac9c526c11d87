"""Buying a degree over REST: what the degree page shows the signed-in student (`my`).

The cart, checkout and admin routes are in gateway/rest_shop.py (degree lines beside course lines);
the rules are in shop/degree_buy.py; docs/degree.md "Buying a degree".
"""

from typing import Any

from shop.service import ShopService


async def my_degree(shop: ShopService, user_id: int, degree_course_id: int) -> dict[str, Any]:
    """`{"enrolment": {id, status, registered} | null}` for the degree page (read only)."""
    enrolment = await shop.degree_enrolment(user_id, degree_course_id)
    if enrolment is None:
        return {"enrolment": None}
    return {
        "enrolment": {
            "id": enrolment["_id"],
            "status": enrolment.get("status"),
            "registered": enrolment.get("registration") is not None,
        }
    }
