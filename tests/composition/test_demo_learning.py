"""The demo courses' outlines: free previews and paid sections with real-looking links."""

from composition.demo_learning import OUTLINES, seed_demo_outline
from shop.learning import playable_link
from tests.shop.fakes import fake_world


async def test_demo_outlines_mix_free_previews_and_paid_lessons() -> None:
    world = fake_world()
    shop = world.shop
    top = await shop.create_category("Programming", None)
    sub = await shop.create_category("Python", top["_id"])
    for index in OUTLINES:
        course = await shop.create_course({"name": f"demo {index}", "sub_category_id": sub["_id"]})
        await seed_demo_outline(shop, course["_id"], index)
        sections = [
            s for s in world.store.state.table("sections").values() if s["course_id"] == course["_id"]
        ]
        assert {s["free_trial"] for s in sections} == {True, False}
        assert {s["section_type"] for s in sections} == {"video", "document", "exercise"}
        assert all(
            playable_link(s["link"]) and s["link"].startswith("https://example.com/") for s in sections
        )
        assert len({s["link"] for s in sections}) == len(sections)
