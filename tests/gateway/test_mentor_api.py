"""The mentors' REST on the real MongoDB and Redis: admins grant and assign mentors (audited),
is_mentor on /me, the queue, a record, grading with its money and the student's live
homework_graded frame, 403s for non-mentors and other mentors' students, follow-ups (JSON and a
multipart file), the cohort and the sweep. CORE's documents are inserted in the shapes the degree
path writes."""

import datetime
import uuid
from collections.abc import AsyncIterator

import pytest

from shop.degree_mentoring import MentorService
from tests.gateway.conftest import AppServer
from tests.gateway.test_shop_api import ShopServer, running_shop
from tests.gateway.test_ws import Bidder
from tests.shop.degree_docs import day, enrolment, hand_in, homework, study

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def shop_server(app_server: AppServer) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


class Cohort:
    def __init__(self, s: ShopServer) -> None:
        self.s = s
        self.mentor = self.other = self.student = 0
        self.mentor_token = self.other_token = self.student_token = ""
        self.enrolment_id = ""

    @classmethod
    async def make(cls, s: ShopServer) -> "Cohort":
        c = cls(s)
        c.mentor, c.mentor_token = await s.api.register()
        c.other, c.other_token = await s.api.register()
        c.student, c.student_token = await s.api.register()
        for user in (c.mentor, c.other):
            await s.admin(
                "POST", "/api/v1/admin/degree/mentors", {"user_id": user, "name": f"M{user}", "intro": "hi"}
            )
        today = datetime.datetime.now(datetime.UTC).date()
        recommended = (today + datetime.timedelta(days=3)).isoformat()
        doc = enrolment(c.student, 900, valid_from=(today - datetime.timedelta(days=5)).isoformat())
        c.enrolment_id = doc["_id"]
        db = s.shop_ctx.db
        await db.shop_degree_enrolments.insert_one(doc)
        schedule = [{"homework_id": 901, "recommended_date": day(recommended)}]
        await db.shop_study_records.insert_one(study(doc, 9001, schedule=schedule))
        await db.shop_study_records.insert_one(study(doc, 9002, order=2, status="not_opened"))
        await db.shop_homework.insert_one(homework(901, 9001, value=2000))
        doc["mentor_id"] = c.mentor
        record = hand_in(901, doc, 9001, 901, handed_in=today.isoformat(), recommended=recommended)
        await db.shop_homework_records.insert_one(record)
        return c


async def test_grant_assign_queue_grade_and_live_notice(shop_server: ShopServer) -> None:
    s = shop_server
    c = await Cohort.make(s)
    me = await s.call("GET", "/api/v1/me", token=c.mentor_token)
    assert me.json["is_mentor"] is True
    assert (await s.call("GET", "/api/v1/me", token=c.student_token)).json["is_mentor"] is False
    # Not assigned yet: the queue is empty and the record is someone else's.
    assert (await s.call("GET", "/api/v1/mentor/queue", token=c.mentor_token)).json == {"items": []}
    assert (await s.call("GET", "/api/v1/mentor/queue", token=c.student_token)).code == "MENTOR_REQUIRED"
    assigned = await s.admin(
        "POST", f"/api/v1/admin/degree/enrolments/{c.enrolment_id}/mentor", {"mentor_id": c.mentor}
    )
    assert assigned["mentor_id"] == c.mentor
    audit = await s.shop_ctx.db.audit.find_one({"action": "degree.mentor_assign"})
    assert audit is not None and audit["target"] == f"degree_enrolment:{c.enrolment_id}"
    queue = (await s.call("GET", "/api/v1/mentor/queue", token=c.mentor_token)).json["items"]
    assert [(q["record_id"], q["homework_title"], q["late"], q["module_name"]) for q in queue] == [
        (901, "Homework 901", False, "Module 9001")
    ]
    students = (await s.call("GET", "/api/v1/mentor/students", token=c.mentor_token)).json["items"]
    assert [(r["enrolment_id"], r["modules_total"], r["behind"]) for r in students] == [
        (c.enrolment_id, 2, 0)
    ]
    assert (await s.call("GET", "/api/v1/mentor/records/901", token=c.other_token)).code == "NOT_YOUR_STUDENT"
    record = (await s.call("GET", "/api/v1/mentor/records/901", token=c.mentor_token)).json
    assert record["id"] == 901 and record["recommended_date"] == queue[0]["recommended_date"]

    socket = await Bidder.connect(s.api, c.student_token)
    bad = await s.call(
        "POST", "/api/v1/mentor/records/901/grade", {"submission": 1, "grade": "E"}, token=c.mentor_token
    )
    assert bad.status == 400
    other = await s.call(
        "POST", "/api/v1/mentor/records/901/grade", {"submission": 1, "grade": "A"}, token=c.other_token
    )
    assert other.code == "NOT_YOUR_STUDENT"
    graded = await s.call(
        "POST",
        "/api/v1/mentor/records/901/grade",
        {"submission": 1, "grade": "A", "comment": "<b>good</b>"},
        token=c.mentor_token,
    )
    assert graded.status == 200, graded.body
    assert (graded.json["status"], graded.json["reward_status"], graded.json["comment"]) == (
        "passed",
        "rewarded",
        "<b>good</b>",
    )
    frame = await socket.until("homework_graded")
    assert frame == {
        "type": "homework_graded",
        "degree_course_id": 900,
        "homework_id": 901,
        "record_id": 901,
        "grade": "A",
        "passed": True,
        "reward_status": "rewarded",
        "scholarship": 2000,
    }
    socket.conn.close()
    again = await s.call(
        "POST", "/api/v1/mentor/records/901/grade", {"submission": 1, "grade": "A"}, token=c.mentor_token
    )
    assert again.status == 200
    changed = await s.call(
        "POST", "/api/v1/mentor/records/901/grade", {"submission": 1, "grade": "B"}, token=c.mentor_token
    )
    assert changed.code == "ALREADY_GRADED"
    assert (await s.call("GET", "/api/v1/me", token=c.student_token)).json["balance"] == 2000
    cohort = await s.admin("GET", "/api/v1/admin/degree/courses/900/cohort")
    assert [(r["enrolment_id"], r["modules_done"], r["scholarship_awarded"]) for r in cohort["items"]] == [
        (c.enrolment_id, 1, 2000)
    ]


async def test_followups_revoke_and_sweep(shop_server: ShopServer) -> None:
    s = shop_server
    c = await Cohort.make(s)
    await s.admin("POST", f"/api/v1/admin/degree/enrolments/{c.enrolment_id}/mentor", {"mentor_id": c.mentor})
    path = f"/api/v1/mentor/students/{c.enrolment_id}/followups"
    added = await s.call("POST", path, {"channel": "phone", "text": "called <them>"}, token=c.mentor_token)
    assert added.status == 201, added.body
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="channel"\r\n\r\nwechat\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\nsent notes\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + PNG
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    upload = await s.call("POST", path, token=c.mentor_token, raw=body, headers=headers)
    assert upload.status == 201, upload.body
    assert upload.json["files"][0]["type"] == "image/png"
    file_url = upload.json["files"][0]["url"]
    served = await s.call("GET", file_url, token=c.mentor_token)
    assert (served.status, served.body) == (200, PNG)
    assert (await s.call("GET", file_url, token=c.other_token)).status == 404
    listed = (await s.call("GET", path, token=c.mentor_token)).json["items"]
    assert [f["channel"] for f in listed] == ["wechat", "phone"]
    assert (await s.call("GET", path, token=c.other_token)).code == "NOT_YOUR_STUDENT"
    bad = await s.call("POST", path, {"channel": "pigeon", "text": "x"}, token=c.mentor_token)
    assert bad.status == 400
    # Over 10 MiB, or bytes of no accepted type: refused, and no follow-up is written.
    too_large = await s.call(
        "POST",
        path,
        token=c.mentor_token,
        raw=body.replace(PNG, PNG + b"\0" * (10 * 1024 * 1024)),
        headers=headers,
    )
    assert (too_large.status, too_large.code) == (413, "FILE_TOO_LARGE")
    exe = await s.call(
        "POST", path, token=c.mentor_token, raw=body.replace(PNG, b"MZ\x90\x00" * 64), headers=headers
    )
    assert (exe.status, exe.code) == (400, "FILE_REJECTED")
    assert len((await s.call("GET", path, token=c.mentor_token)).json["items"]) == 2

    await s.admin("DELETE", f"/api/v1/admin/degree/mentors/{c.other}")
    assert (await s.call("GET", "/api/v1/mentor/queue", token=c.other_token)).code == "MENTOR_REQUIRED"
    inactive = await s.call(
        "POST",
        f"/api/v1/admin/degree/enrolments/{c.enrolment_id}/mentor",
        {"mentor_id": c.other},
        token=await s.api.admin_token(),
    )
    assert inactive.code == "MENTOR_INACTIVE"
    unknown = await s.call(
        "POST",
        "/api/v1/admin/degree/mentors",
        {"user_id": 987654, "name": "x"},
        token=await s.api.admin_token(),
    )
    assert unknown.status == 404
    assert (await s.call("POST", "/api/v1/admin/degree/sweep", token=c.mentor_token)).status == 403

    # The sweep: the enrolment's validity ended yesterday -> timed out.
    yesterday = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    await s.shop_ctx.db.shop_degree_enrolments.update_one(
        {"_id": c.enrolment_id},
        {"$set": {"valid_to": yesterday.replace(hour=0, minute=0, second=0, microsecond=0)}},
    )
    swept = await s.admin("POST", "/api/v1/admin/degree/sweep")
    assert swept["timed_out"] == 1
    found = await s.shop_ctx.db.shop_degree_enrolments.find_one({"_id": c.enrolment_id})
    assert found is not None and found["status"] == "timed_out"
    assert isinstance(s.shop_ctx.mentoring, MentorService)
