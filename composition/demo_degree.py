"""The demo degree (学位课) `make run` seeds beside the demo courses (composition/demo.py): one degree on
sale with a price policy, two modules of two chapters with two homework each, and two mentor accounts.

Idempotent on its own: every step looks for what it would create first (by name, chapter number,
homework title, username), so running it twice leaves the same data. Writes go through the shop,
degree and mentoring services (`ctx.shop`, gateway/rest_degree.py `degree_of`, gateway/rest_mentor.py
`mentoring_of`), so the demo obeys the same rules as an admin.
"""

from __future__ import annotations

import asyncio
from typing import Final

from gateway.rest_degree import degree_of
from gateway.rest_mentor import mentoring_of
from persistence.mongo import Document
from web.context import AppContext

DEGREE_NAME: Final = "Python 全栈开发学位"
DEMO_MENTORS: Final = (
    (
        "mentor1",
        "mentor1-demo-pass",
        "王老师 Ms Wang",
        "十年 Python 后端经验。Ten years of Python back ends.",
    ),
    (
        "mentor2",
        "mentor2-demo-pass",
        "李老师 Mr Li",
        "前端与全栈工程师。A front-end and full-stack engineer.",
    ),
)
POLICY: Final = (180, 1999_00)  # 180 days, ¥1,999
# module -> chapters -> homework (title, kind, requirement, recommended_days, scholarship_value in fen)
MODULES: Final[tuple[tuple[str, tuple[tuple[str, tuple[tuple[str, str, str, int, int], ...]], ...]], ...]] = (
    (
        "Python 全栈 · 模块一 Web 后端 Back end",
        (
            (
                "HTTP 与 Tornado",
                (
                    (
                        "Hello, Tornado",
                        "assignment",
                        "一个返回 JSON 的处理器及其测试。A handler that answers JSON, with a test.",
                        3,
                        2000,
                    ),
                    (
                        "REST 资源设计 A REST resource",
                        "assignment",
                        "为课程设计增删改查接口。CRUD endpoints for courses.",
                        5,
                        3000,
                    ),
                ),
            ),
            (
                "MongoDB 数据建模",
                (
                    (
                        "文档建模 Modelling documents",
                        "assignment",
                        "为订单与课程建模并说明索引。Model orders and courses; explain the indexes.",
                        4,
                        2500,
                    ),
                    (
                        "模块一考核 Module 1 exam",
                        "exam",
                        "完成一个带测试的小型后端。A small tested back end.",
                        7,
                        4000,
                    ),
                ),
            ),
        ),
    ),
    (
        "Python 全栈 · 模块二 前端与部署 Front end and deployment",
        (
            (
                "前端基础 Front-end basics",
                (
                    (
                        "页面与表单 Pages and forms",
                        "assignment",
                        "一个可访问的报名表单。An accessible sign-up form.",
                        3,
                        2000,
                    ),
                    (
                        "调用 API Calling the API",
                        "assignment",
                        "用 fetch 展示课程列表。List courses with fetch.",
                        5,
                        3000,
                    ),
                ),
            ),
            (
                "部署 Deployment",
                (
                    (
                        "容器化 Containers",
                        "assignment",
                        "为后端写一个镜像。An image for the back end.",
                        6,
                        3000,
                    ),
                    (
                        "模块二考核 Module 2 exam",
                        "exam",
                        "把全栈应用部署上线。Deploy the full-stack app.",
                        7,
                        4000,
                    ),
                ),
            ),
        ),
    ),
)


async def seed_demo_degree(ctx: AppContext) -> int:
    """The demo degree, its modules, chapters, homework and mentors; returns the degree's id."""
    shop = ctx.shop
    assert shop is not None  # built by start_shop before the demo is seeded
    db = ctx.db
    degree = await db.shop_degree_courses.find_one({"name": DEGREE_NAME})
    if degree is None:
        degree = await shop.create_degree_course(
            {
                "name": DEGREE_NAME,
                "image": "",
                "brief": "从 Web 后端到部署，导师一对一批改作业，按时完成可得奖学金。"
                "From back end to deployment, with a mentor grading your homework and scholarships "
                "for work handed in on time.",
                "prerequisite": "会写简单的 Python 脚本。You can write a small Python script.",
                "total_scholarship": 40_000,
                "mentor_fee": 15_000,
                "period_days": 150,
                "teacher_ids": [],
                "scholarships": [
                    {"time_percent": 60, "value": 10_000},
                    {"time_percent": 80, "value": 6_000},
                    {"time_percent": 100, "value": 3_000},
                ],
                "status": "online",
            }
        )
    degree_id = int(degree["_id"])
    valid_days, price = POLICY
    if not await db.shop_price_policies.find_one(
        {"target": "degree", "target_id": degree_id, "valid_days": valid_days}
    ):
        await shop.add_policy("degree", degree_id, valid_days, price)
    sub_category_id = await _subcategory(ctx)
    for order, (module_name, chapters) in enumerate(MODULES):
        module = await db.shop_courses.find_one({"name": module_name})
        if module is None:
            module = await shop.create_course(
                {
                    "name": module_name,
                    "image": "",
                    "sub_category_id": sub_category_id,
                    "course_type": "degree",
                    "degree_course_id": degree_id,
                    "brief": "学位课模块。A module of the demo degree.",
                    "level": "intermediate",
                    "status": "online",
                    "order": order,
                    "period_days": 75,
                    "attachment_path": "",
                }
            )
        module_id = int(module["_id"])
        for number, (chapter_name, homework) in enumerate(chapters, start=1):
            chapter = await db.shop_chapters.find_one({"course_id": module_id, "chapter": number})
            if chapter is None:
                chapter = await shop.add_chapter(
                    module_id, {"chapter": number, "name": chapter_name, "summary": ""}
                )
            for position, spec in enumerate(homework):
                await _homework(ctx, module_id, chapter, position, spec)
    # At once, like the demo staff (composition/demo_staff.py): their password hashes overlap.
    await asyncio.gather(*(_mentor(ctx, *mentor) for mentor in DEMO_MENTORS))
    return degree_id


async def _subcategory(ctx: AppContext) -> int:
    """The demo courses' "Programming › Python" subcategory (made here when it is missing)."""
    shop = ctx.shop
    assert shop is not None
    sub = await ctx.db.shop_categories.find_one({"name": "Python", "parent_id": {"$ne": None}})
    if sub is not None:
        return int(sub["_id"])
    top = await ctx.db.shop_categories.find_one({"name": "Programming"})
    if top is None:
        top = await shop.create_category("Programming", None)
    return int((await shop.create_category("Python", int(top["_id"])))["_id"])


async def _homework(
    ctx: AppContext, module_id: int, chapter: Document, position: int, spec: tuple[str, str, str, int, int]
) -> None:
    title, kind, requirement, days, value = spec
    if await ctx.db.shop_homework.find_one({"course_id": module_id, "title": title}, {"_id": 1}):
        return
    fields: Document = {
        "course_id": module_id,
        "chapter_id": int(chapter["_id"]),
        "title": title,
        "kind": kind,
        "requirement": requirement,
        "scoring_points": "功能 60，测试 30，代码风格 10。Works 60, tests 30, style 10.",
        "recommended_days": days,
        "scholarship_value": value,
        "order": position,
        "enabled": True,
    }
    await degree_of(ctx).add_homework(fields)


async def _mentor(ctx: AppContext, username: str, password: str, name: str, intro: str) -> None:
    user = await ctx.db.users.find_one({"username_key": username}, {"_id": 1})
    user_id = int(user["_id"]) if user is not None else (await ctx.accounts.register(username, password))[0]
    account = await ctx.accounts.staff_account(user_id)
    if not account.roles and not account.is_admin:  # the back office's mentor lane (docs/admin.md "Roles")
        await ctx.accounts.set_staff_roles(user_id, ["mentor"])
    if await ctx.db.shop_mentors.find_one({"_id": user_id, "active": True}, {"_id": 1}):
        return
    await mentoring_of(ctx).grant_mentor(user_id, name, intro)
