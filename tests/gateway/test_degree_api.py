"""The degree path's student side over HTTP on the real MongoDB and Redis (gateway/rest_degree.py):
admin homework authoring (audited), registration, opening modules, multipart hand-ins with a real PNG
and a refused .exe, the size and count limits, file access, suspend/resume, mentors and reviews.

The enrolment is inserted as the BUY part writes it at payment (docs/degree.md)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from persistence.mongo import utc_now
from tests.admin.conftest import multipart, png_bytes
from tests.gateway.conftest import Answer
from tests.gateway.test_shop_api import ShopServer, running_shop
from tests.shop.degree_fakes import FORM, enrolment_document

_names = itertools.count(1)


@pytest.fixture
async def shop_server(app_server: Any) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


@dataclasses.dataclass
class Degree:
    degree_id: int
    modules: list[int]
    chapters: list[int]
    homework: list[int]  # two of module 1


async def a_degree(s: ShopServer) -> Degree:
    """A degree with two modules (one chapter each) and two homework in module 1, made by the admin."""
    n = next(_names)
    degree = await s.admin(
        "POST",
        "/api/v1/admin/shop/degree-courses",
        {"name": f"Degree {n}", "total_scholarship": 40_000, "mentor_fee": 15_000, "period_days": 150},
    )
    sub = await s.category()
    modules, chapters = [], []
    for index in range(2):
        module = await s.admin(
            "POST",
            "/api/v1/admin/shop/courses",
            {
                "name": f"Degree {n} module {index + 1}",
                "sub_category_id": sub,
                "course_type": "degree",
                "degree_course_id": degree["id"],
                "order": index + 1,
            },
        )
        chapter = await s.admin(
            "POST", f"/api/v1/admin/shop/courses/{module['id']}/chapters", {"chapter": 1, "name": "Start"}
        )
        modules.append(int(module["id"]))
        chapters.append(int(chapter["id"]))
    homework = []
    for title, days in (("Warm-up", 7), ("Project", 14)):
        made = await s.admin(
            "POST",
            "/api/v1/admin/degree/homework",
            {
                "chapter_id": chapters[0],
                "title": title,
                "kind": "assignment",
                "requirement": "Write <b>it</b>",
                "scoring_points": "clarity",
                "recommended_days": days,
                "scholarship_value": 1000,
            },
        )
        homework.append(int(made["id"]))
    return Degree(int(degree["id"]), modules, chapters, homework)


async def enrol(s: ShopServer, user_id: int, degree_id: int, **overrides: Any) -> str:
    degree = await s.shop_ctx.db.shop_degree_courses.find_one({"_id": degree_id})
    assert degree is not None
    doc = enrolment_document(user_id, degree, utc_now(), **overrides)
    await s.shop_ctx.db.shop_degree_enrolments.insert_one(doc)
    return str(doc["_id"])


async def add_mentor(s: ShopServer, name: str = "Mentor", *, active: bool = True) -> tuple[int, str]:
    user_id, token = await s.api.register()
    await s.shop_ctx.db.shop_mentors.insert_one(
        {"_id": user_id, "name": name, "intro": "Ten years of Python", "active": active}
    )
    return user_id, token


async def hand_in(
    s: ShopServer,
    token: str,
    degree_id: int,
    homework_id: int,
    text: str,
    files: list[tuple[str, str, bytes]],
) -> Answer:
    """A multipart hand-in with any number of `files` parts (the helper names them files, files2...)."""
    body, content_type = multipart({"text": text} if text else {}, {})
    boundary = content_type.split("boundary=")[1]
    parts = body[: -len(f"--{boundary}--\r\n")]
    for filename, kind, data in files:
        parts += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
                f"Content-Type: {kind}\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    parts += f"--{boundary}--\r\n".encode()
    return await s.call(
        "POST",
        f"/api/v1/me/degrees/{degree_id}/homework/{homework_id}/submissions",
        raw=parts,
        token=token,
        headers={"Content-Type": content_type},
    )


async def test_the_student_flow(shop_server: ShopServer) -> None:
    s = shop_server
    d = await a_degree(s)
    mentor_id, mentor_token = await add_mentor(s, "Ms Mentor")
    student, token = await s.api.register()
    _other, other_token = await s.api.register()

    # Not bought: 403 DEGREE_REQUIRED; signed out: 401.
    assert (await s.call("GET", f"/api/v1/me/degrees/{d.degree_id}", token=token)).code == "DEGREE_REQUIRED"
    assert (await s.call("GET", "/api/v1/me/degrees")).status == 401
    await enrol(s, student, d.degree_id)

    listed = (await s.call("GET", "/api/v1/me/degrees", token=token)).json["items"]
    assert [(e["degree_course_id"], e["status"], e["registered"]) for e in listed] == [
        (d.degree_id, "not_started", False)
    ]
    assert listed[0]["money"] == {
        "total_scholarship": 40_000,
        "scholarship_awarded": 0,
        "scholarship_left": 40_000,
        "graduation_award": 0,
    }
    assert listed[0]["progress"] == {"done": 0, "total": 2} and listed[0]["valid_from"] is None

    # Active mentors are public; the student prefers one in the form, which also opens module 1.
    mentors = (await s.call("GET", "/api/v1/mentors")).json["items"]
    assert {"id": mentor_id, "name": "Ms Mentor", "intro": "Ten years of Python"} in mentors
    path = f"/api/v1/me/degrees/{d.degree_id}/registration"
    bad = await s.call("PUT", path, {**FORM, "salary_band": "a lot"}, token=token)
    assert (bad.status, bad.code) == (400, "VALIDATION")
    form = {**FORM, "open_first_module": True, "preferred_mentor_id": mentor_id}
    registered = await s.call("PUT", path, form, token=token)
    assert registered.status == 200, registered.body
    view = registered.json
    assert (
        view["registered"]
        and view["status"] == "studying"
        and view["mentor"] == {"id": mentor_id, "name": "Ms Mentor"}
    )
    assert view["registration"]["company"] == "Acme" and isinstance(view["registration"]["at_ms"], int)
    assert view["valid_from"].endswith("T00:00:00.000Z") and isinstance(view["valid_to_ms"], int)
    assert [m["status"] for m in view["modules"]] == ["studying", "not_opened"]
    first = view["modules"][0]["homework"]
    assert [h["id"] for h in first] == d.homework and first[0]["record"] is None
    assert first[0]["recommended_date"] is not None and len(first[0]["recommended_date"]) == 10
    again = await s.call("PUT", path, form, token=token)
    assert (again.status, again.code) == (409, "ALREADY_REGISTERED")

    # Module 2 waits for module 1.
    opened = await s.call(
        "POST", f"/api/v1/me/degrees/{d.degree_id}/modules/{d.modules[1]}/open", token=token
    )
    assert (opened.status, opened.code) == (409, "PREVIOUS_MODULE_NOT_DONE")

    # A hand-in with text and a real PNG.
    png = png_bytes()
    answer = await hand_in(
        s, token, d.degree_id, d.homework[0], "my <answer>", [("shot.png", "image/png", png)]
    )
    assert answer.status == 201, answer.body
    record = answer.json
    assert (record["status"], record["reward_status"], record["submit_count"]) == ("submitted", "new", 1)
    assert record["mentor_id"] == mentor_id and record["submissions"][0]["text"] == "my <answer>"
    (file,) = record["submissions"][0]["files"]
    assert (file["name"], file["type"], file["size"]) == ("shot.png", "image/png", len(png))
    assert file["url"] == f"/api/v1/degree-files/{file['id']}"

    # The file: for the student, their mentor and admins; 404 for anyone else.
    for who in (token, mentor_token, await s.api.admin_token()):
        got = await s.call("GET", file["url"], token=who)
        assert got.status == 200 and got.body == png
        assert got.headers["Content-Type"] == "image/png"
        assert got.headers["Content-Disposition"].startswith("attachment;")
        assert got.headers["X-Content-Type-Options"] == "nosniff"
        assert got.headers["Cache-Control"].startswith("private")
    assert (await s.call("GET", file["url"], token=other_token)).status == 404
    assert (await s.call("GET", file["url"])).status == 401
    assert (await s.call("GET", "/api/v1/degree-files/" + "0" * 24, token=token)).status == 404

    # JSON hand-ins count up; the homework page shows the whole record.
    resubmitted = await s.call(
        "POST",
        f"/api/v1/me/degrees/{d.degree_id}/homework/{d.homework[0]}/submissions",
        {"text": "second try"},
        token=token,
    )
    assert resubmitted.status == 201 and resubmitted.json["submit_count"] == 2
    page = await s.call("GET", f"/api/v1/me/degrees/{d.degree_id}/homework/{d.homework[0]}", token=token)
    assert page.status == 200
    assert page.json["homework"]["requirement"] == "Write <b>it</b>"
    assert page.json["homework"]["recommended_date"] == first[0]["recommended_date"]
    assert [s_["n"] for s_ in page.json["record"]["submissions"]] == [1, 2]
    empty = await s.call("GET", f"/api/v1/me/degrees/{d.degree_id}/homework/{d.homework[1]}", token=token)
    assert empty.status == 200 and empty.json["record"] is None
    assert (
        await s.call("GET", f"/api/v1/me/degrees/{d.degree_id}/homework/{d.homework[0]}", token=other_token)
    ).code == "DEGREE_REQUIRED"

    # Passed homework takes no more hand-ins.
    await s.shop_ctx.db.shop_homework_records.update_one(
        {"_id": record["id"]}, {"$set": {"status": "passed"}}
    )
    late = await hand_in(s, token, d.degree_id, d.homework[0], "third", [])
    assert (late.status, late.code) == (409, "HOMEWORK_PASSED")

    detail = (await s.call("GET", f"/api/v1/me/degrees/{d.degree_id}", token=token)).json
    assert detail["modules"][0]["homework"][0]["record"]["submit_count"] == 2


async def test_hand_in_limits(shop_server: ShopServer) -> None:
    s = shop_server
    d = await a_degree(s)
    student, token = await s.api.register()
    await enrol(s, student, d.degree_id)
    not_open = await hand_in(s, token, d.degree_id, d.homework[0], "early", [])
    assert (not_open.status, not_open.code) == (409, "MODULE_NOT_OPEN")
    await s.call(
        "PUT",
        f"/api/v1/me/degrees/{d.degree_id}/registration",
        {**FORM, "open_first_module": True},
        token=token,
    )

    exe = await hand_in(
        s, token, d.degree_id, d.homework[0], "", [("setup.exe", "image/png", b"MZ\x90\x00\x03" + bytes(64))]
    )
    assert (exe.status, exe.code) == (400, "FILE_REJECTED")
    big = await hand_in(
        s,
        token,
        d.degree_id,
        d.homework[0],
        "",
        [("big.png", "image/png", png_bytes() + bytes(11 * 1024 * 1024))],
    )
    assert (big.status, big.code) == (413, "FILE_TOO_LARGE")
    six = await hand_in(
        s, token, d.degree_id, d.homework[0], "", [(f"{i}.png", "image/png", png_bytes()) for i in range(6)]
    )
    assert (six.status, six.code) == (400, "TOO_MANY_FILES")
    nothing = await hand_in(s, token, d.degree_id, d.homework[0], "", [])
    assert (nothing.status, nothing.code) == (400, "VALIDATION")
    long_text = await s.call(
        "POST",
        f"/api/v1/me/degrees/{d.degree_id}/homework/{d.homework[0]}/submissions",
        {"text": "x" * 10_001},
        token=token,
    )
    assert (long_text.status, long_text.code) == (400, "VALIDATION")
    wrong_type = await s.call(
        "POST",
        f"/api/v1/me/degrees/{d.degree_id}/homework/{d.homework[0]}/submissions",
        raw=b"text=hi",
        token=token,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (wrong_type.status, wrong_type.code) == (400, "VALIDATION")
    for content_type, raw in (
        ("multipart/form-data", b""),  # no boundary
        ("multipart/form-data; boundary=a2", b"--a2\r\n[]--a2--\r\n"),  # a part without headers
    ):
        malformed = await s.call(
            "POST",
            f"/api/v1/me/degrees/{d.degree_id}/homework/{d.homework[0]}/submissions",
            raw=raw,
            token=token,
            headers={"Content-Type": content_type},
        )
        assert (malformed.status, malformed.code) == (400, "VALIDATION")
    anonymous = await s.call(
        "POST", f"/api/v1/me/degrees/{d.degree_id}/homework/{d.homework[0]}/submissions", {"text": "hi"}
    )
    assert anonymous.status == 401
    # Nothing refused was stored.
    assert await s.shop_ctx.db["degree_files.files"].count_documents({}) == 0
    assert await s.shop_ctx.db.shop_homework_records.count_documents({}) == 0

    # Disabled homework; a suspended enrolment.
    await s.admin("PATCH", f"/api/v1/admin/degree/homework/{d.homework[1]}", {"enabled": False})
    disabled = await hand_in(s, token, d.degree_id, d.homework[1], "x", [])
    assert (disabled.status, disabled.code) == (409, "HOMEWORK_DISABLED")
    enrolment_id = f"{student}:{d.degree_id}"
    suspended = await s.admin("POST", f"/api/v1/admin/degree/enrolments/{enrolment_id}/suspend")
    assert suspended["status"] == "suspended"
    closed = await hand_in(s, token, d.degree_id, d.homework[0], "x", [])
    assert (closed.status, closed.code) == (409, "ENROLMENT_NOT_ACTIVE")
    twice = await s.call(
        "POST", f"/api/v1/admin/degree/enrolments/{enrolment_id}/suspend", token=await s.api.admin_token()
    )
    assert (twice.status, twice.code) == (409, "ENROLMENT_STATE")
    resumed = await s.admin("POST", f"/api/v1/admin/degree/enrolments/{enrolment_id}/resume")
    assert resumed["status"] == "studying"
    assert (await hand_in(s, token, d.degree_id, d.homework[0], "x", [])).status == 201


async def test_admin_authoring_opening_and_audit(shop_server: ShopServer) -> None:
    s = shop_server
    d = await a_degree(s)
    admin = await s.api.admin_token()
    student, token = await s.api.register()

    listed = await s.admin("GET", f"/api/v1/admin/degree/courses/{d.modules[0]}/homework")
    assert [h["id"] for h in listed["items"]] == d.homework
    assert listed["items"][0]["kind"] == "assignment" and listed["items"][0]["recommended_days"] == 7
    changed = await s.admin(
        "PATCH", f"/api/v1/admin/degree/homework/{d.homework[0]}", {"title": "Warm-up 2", "order": 3}
    )
    assert (changed["title"], changed["order"]) == ("Warm-up 2", 3)
    plain_sub = await s.category()
    plain, _ = await s.course(plain_sub, 100)
    plain_chapter = await s.admin(
        "POST", f"/api/v1/admin/shop/courses/{plain}/chapters", {"chapter": 1, "name": "x"}
    )
    for body in (
        {"chapter_id": plain_chapter["id"], "title": "Not a degree module"},
        {"chapter_id": d.chapters[0], "title": "x", "scholarship_value": 40_001},
        {"chapter_id": d.chapters[0], "title": "x", "recommended_days": 0},
        {"chapter_id": d.chapters[0], "title": "x" * 129},
        {"chapter_id": d.chapters[0], "title": "x", "kind": "quiz"},
        {"chapter_id": d.chapters[0]},
        [1, 2],
    ):
        refused = await s.call("POST", "/api/v1/admin/degree/homework", body, token=admin)
        assert (refused.status, refused.code) == (400, "VALIDATION"), body
    assert (await s.call("POST", "/api/v1/admin/degree/homework", {"title": "x"}, token=token)).status == 403
    assert (await s.call("GET", f"/api/v1/admin/degree/courses/{plain}/homework", token=admin)).status == 404

    # The admin opens module 2 first, for a registered student.
    enrolment_id = await enrol(s, student, d.degree_id)
    early = await s.call(
        "POST", f"/api/v1/admin/degree/enrolments/{enrolment_id}/modules/{d.modules[1]}/open", token=admin
    )
    assert (early.status, early.code) == (409, "REGISTRATION_REQUIRED")
    await s.call("PUT", f"/api/v1/me/degrees/{d.degree_id}/registration", FORM, token=token)
    opened = await s.admin(
        "POST", f"/api/v1/admin/degree/enrolments/{enrolment_id}/modules/{d.modules[1]}/open"
    )
    assert opened["status"] == "studying" and [m["status"] for m in opened["modules"]] == [
        "not_opened",
        "studying",
    ]
    again = await s.call(
        "POST", f"/api/v1/admin/degree/enrolments/{enrolment_id}/modules/{d.modules[1]}/open", token=admin
    )
    assert (again.status, again.code) == (409, "MODULE_ALREADY_OPEN")
    student_opens = await s.call(
        "POST", f"/api/v1/me/degrees/{d.degree_id}/modules/{d.modules[0]}/open", token=token
    )
    assert student_opens.status == 200  # module 1 comes before module 2: nothing earlier to finish
    missing = await s.call("POST", "/api/v1/admin/degree/enrolments/1:999999/suspend", token=admin)
    assert missing.status == 404

    actions = [a["action"] async for a in s.shop_ctx.db.audit.find({"action": {"$regex": "^degree\\."}})]
    assert actions.count("degree.homework_create") == 2
    assert "degree.homework_update" in actions and "degree.open_module" in actions


async def test_degree_reviews(shop_server: ShopServer) -> None:
    s = shop_server
    d = await a_degree(s)
    student, token = await s.api.register()
    buyer, buyer_token = await s.api.register()
    await enrol(s, student, d.degree_id)
    await enrol(s, buyer, d.degree_id)
    path = f"/api/v1/degree-courses/{d.degree_id}/reviews"
    scores = {"teacher": 5, "content": 4, "clarity": 4}
    not_started = await s.call("POST", path, {"module_id": None, "scores": scores, "text": "hi"}, token=token)
    assert (not_started.status, not_started.code) == (403, "DEGREE_REQUIRED")
    await s.call(
        "PUT",
        f"/api/v1/me/degrees/{d.degree_id}/registration",
        {**FORM, "open_first_module": True},
        token=token,
    )
    whole = await s.call(
        "POST", path, {"module_id": None, "scores": scores, "text": "<b>great</b>"}, token=token
    )
    assert whole.status == 201, whole.body
    assert whole.json["text"] == "<b>great</b>" and whole.json["mine"] and whole.json["module_id"] is None
    module = await s.call(
        "POST",
        path,
        {"module_id": d.modules[0], "scores": {**scores, "teacher": 3}, "text": "ok"},
        token=token,
    )
    assert module.status == 201
    dup = await s.call("POST", path, {"scores": scores, "text": "again"}, token=token)
    assert (dup.status, dup.code) == (409, "REVIEW_EXISTS")
    foreign = await s.call("POST", path, {"module_id": 999_999, "scores": scores}, token=token)
    assert (foreign.status, foreign.code) == (400, "VALIDATION")
    assert (await s.call("POST", path, {"scores": scores}, token=buyer_token)).code == "DEGREE_REQUIRED"
    bad = await s.call("POST", path, {"scores": {"teacher": 9}}, token=token)
    assert bad.status == 400

    listed = (await s.call("GET", path)).json
    assert [r["id"] for r in listed["items"]] == [module.json["id"], whole.json["id"]] and listed[
        "total"
    ] == 2
    assert listed["averages"]["teacher"] == "4.0" and listed["averages"]["count"] == 2
    assert not any(r["mine"] for r in listed["items"])
    one = (await s.call("GET", f"{path}?module_id={d.modules[0]}", token=token)).json
    assert [r["id"] for r in one["items"]] == [module.json["id"]] and one["items"][0]["mine"]
    assert (await s.call("GET", "/api/v1/degree-courses/999999/reviews")).status == 404
