"""The catalogue's admin writes: what a category, course, policy, chapter or FAQ must satisfy.

The rules are the seed's (two category levels, a degree module names its degree course, one policy
per validity period, one chapter number per course, one answer per question); the repository
(`CatalogueRepository`) only stores and reports a taken unique key (`Duplicate`).
"""

import datetime
from collections.abc import Iterable

from engine.book.errors import InvalidInput, NotFound
from shop.model import ChapterExists, FaqExists, NameExists, PolicyExists, Record
from shop.ports import CatalogueRepository, Duplicate, Kind


async def _require(catalogue: CatalogueRepository, kind: Kind, ids: Iterable[int], what: str) -> None:
    wanted = set(ids)
    if not wanted:
        return
    missing = sorted(wanted - await catalogue.existing(kind, wanted))
    if missing:
        raise NotFound(f"no {what} {missing[0]}")


async def _insert_named(catalogue: CatalogueRepository, kind: Kind, doc: Record, what: str) -> Record:
    try:
        return await catalogue.insert(kind, doc)
    except Duplicate:
        raise NameExists(f"a {what} named {doc.get('name')!r} exists") from None


async def _subcategory(catalogue: CatalogueRepository, category_id: int) -> None:
    category = await catalogue.get("categories", category_id)
    if category is None or category.get("parent_id") is None:
        raise NotFound(f"no subcategory {category_id}")


async def create_category(catalogue: CatalogueRepository, name: str, parent_id: int | None) -> Record:
    """A category (课程大类) or, with `parent_id`, a subcategory (课程子类); two levels only."""
    if parent_id is not None:
        parent = await catalogue.get("categories", parent_id)
        if parent is None or parent.get("parent_id") is not None:
            raise NotFound(f"no top-level category {parent_id}")
    return await _insert_named(catalogue, "categories", {"name": name, "parent_id": parent_id}, "category")


async def create_teacher(catalogue: CatalogueRepository, fields: Record) -> Record:
    return await catalogue.insert("teachers", dict(fields))


async def create_degree_course(catalogue: CatalogueRepository, fields: Record) -> Record:
    await _require(catalogue, "teachers", fields.get("teacher_ids", ()), "teacher")
    return await _insert_named(catalogue, "degree_courses", dict(fields), "degree course")


async def _check_degree_link(
    catalogue: CatalogueRepository, course_type: str | None, degree_course_id: int | None
) -> None:
    # Seed rule: a degree module must name its degree course (and only a degree module may).
    if course_type == "degree" and degree_course_id is None:
        raise InvalidInput("a degree module needs degree_course_id")
    if course_type not in (None, "degree") and degree_course_id is not None:
        raise InvalidInput("only a degree module (course_type degree) has a degree_course_id")
    if degree_course_id is not None:
        await _require(catalogue, "degree_courses", [degree_course_id], "degree course")


async def create_course(catalogue: CatalogueRepository, fields: Record, now: datetime.datetime) -> Record:
    doc = dict(fields)
    await _subcategory(catalogue, doc["sub_category_id"])
    await _check_degree_link(catalogue, doc.get("course_type"), doc.get("degree_course_id"))
    doc["created_at"] = now
    return await _insert_named(catalogue, "courses", doc, "course")


async def update_course(catalogue: CatalogueRepository, course_id: int, changes: Record) -> Record:
    """Change some fields of a course, e.g. take it offline (its cart entries become unavailable)."""
    current = await catalogue.get("courses", course_id)
    if current is None:
        raise NotFound(f"no course {course_id}")
    merged = {**current, **changes}
    if "sub_category_id" in changes:
        await _subcategory(catalogue, changes["sub_category_id"])
    if "course_type" in changes or "degree_course_id" in changes:
        await _check_degree_link(catalogue, merged.get("course_type"), merged.get("degree_course_id"))
    if not changes:
        return current
    try:
        doc = await catalogue.update_course(course_id, changes)
    except Duplicate:
        raise NameExists(f"a course named {changes.get('name')!r} exists") from None
    if doc is None:
        raise NotFound(f"no course {course_id}")
    return doc


async def put_course_detail(catalogue: CatalogueRepository, course_id: int, fields: Record) -> Record:
    """The course page (CourseDetail), one per course, replaced as a whole."""
    await _require(catalogue, "courses", [course_id], "course")
    await _require(catalogue, "teachers", fields.get("teacher_ids", ()), "teacher")
    await _require(catalogue, "courses", fields.get("recommend_course_ids", ()), "course")
    doc = {"_id": course_id, **fields}
    await catalogue.put_course_detail(course_id, doc)
    return doc


def _target_kind(target: str) -> tuple[Kind, str]:
    return ("courses", "course") if target == "course" else ("degree_courses", "degree course")


async def add_policy(
    catalogue: CatalogueRepository, target: str, target_id: int, valid_days: int, price: int
) -> Record:
    kind, what = _target_kind(target)
    await _require(catalogue, kind, [target_id], what)
    doc: Record = {"target": target, "target_id": target_id, "valid_days": valid_days, "price": price}
    try:
        return await catalogue.insert("price_policies", doc)
    except Duplicate:
        raise PolicyExists(f"{target} {target_id} already has a {valid_days}-day policy") from None


async def remove_policy(catalogue: CatalogueRepository, policy_id: int) -> None:
    """Delete a policy; carts holding it show the line as unavailable, orders keep their copy."""
    if not await catalogue.delete_policy(policy_id):
        raise NotFound(f"no price policy {policy_id}")


async def add_chapter(catalogue: CatalogueRepository, course_id: int, fields: Record) -> Record:
    await _require(catalogue, "courses", [course_id], "course")
    try:
        return await catalogue.insert("chapters", {"course_id": course_id, **fields})
    except Duplicate:
        raise ChapterExists(f"course {course_id} already has chapter {fields['chapter']}") from None


async def add_section(catalogue: CatalogueRepository, chapter_id: int, fields: Record) -> Record:
    chapter = await catalogue.get("chapters", chapter_id)
    if chapter is None:
        raise NotFound(f"no chapter {chapter_id}")
    return await catalogue.insert(
        "sections", {"chapter_id": chapter_id, "course_id": chapter["course_id"], **fields}
    )


async def add_faq(
    catalogue: CatalogueRepository, target: str, target_id: int, question: str, answer: str
) -> Record:
    kind, _what = _target_kind(target)
    await _require(catalogue, kind, [target_id], target)
    doc: Record = {"target": target, "target_id": target_id, "question": question, "answer": answer}
    try:
        return await catalogue.insert("faqs", doc)
    except Duplicate:
        raise FaqExists("this question is already answered") from None
