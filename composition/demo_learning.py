"""Demo outlines for the seeded courses (composition/demo.py `seed_demo_courses`): chapters whose
sections mix free previews and paid lessons, with real-looking links, so the app's course page and
"my course" screens have something to show and to lock."""

from shop.service import ShopService

# (chapter name, [(section name, type, duration, free preview)])
OUTLINES: dict[int, tuple[tuple[str, tuple[tuple[str, str, str, bool], ...]], ...]] = {
    0: (
        (
            "Getting started",
            (
                ("Welcome and what you will build", "video", "04:12", True),
                ("Installing Python 3.11 and a virtual environment", "video", "09:30", True),
                ("Cheat sheet: the standard library you will use", "document", "", False),
            ),
        ),
        (
            "Modelling an auction",
            (
                ("Bids, increments and integer money", "video", "14:05", False),
                ("Soft close, step by step", "video", "11:48", False),
                ("Exercise: a bid book in 50 lines", "exercise", "", False),
            ),
        ),
    ),
    1: (
        (
            "The event loop",
            (
                ("What the loop really does", "video", "12:20", True),
                ("Tasks, futures and cancellation", "video", "18:02", False),
            ),
        ),
        (
            "Concurrency without locks",
            (
                ("A single writer and its queue", "video", "16:40", False),
                ("Reading: backpressure in practice", "document", "", False),
                ("Exercise: a bounded fan-out", "exercise", "", False),
            ),
        ),
    ),
}


def demo_link(course_id: int, chapter: int, order: int, section_type: str) -> str:
    kind = {"video": "videos", "document": "docs", "exercise": "exercises"}[section_type]
    return f"https://example.com/{kind}/gavel-c{course_id}-ch{chapter}-s{order}"


async def seed_demo_outline(shop: ShopService, course_id: int, index: int) -> None:
    """The chapters and sections of the `index`-th demo course (nothing for others)."""
    for number, (chapter_name, sections) in enumerate(OUTLINES.get(index, ()), start=1):
        chapter = await shop.add_chapter(course_id, {"chapter": number, "name": chapter_name, "summary": ""})
        for order, (name, section_type, video_time, free) in enumerate(sections, start=1):
            await shop.add_section(
                int(chapter["_id"]),
                {
                    "name": name,
                    "order": order,
                    "section_type": section_type,
                    "link": demo_link(course_id, number, order, section_type),
                    "video_time": video_time,
                    "free_trial": free,
                },
            )
