"""Sessions (专场) and lots (拍品): create, edit, schedule; images and specs (规格); open/close/cancel.

Form input is turned into the JSON shapes of the REST admin API and read by the very same readers
(`web.catalog_fields.read_session` / `read_lot`), so the UI and the API share one set of rules;
the writes go through `Catalog` (metadata document, then the engine).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import tornado.httputil
import tornado.web

from admin.base import (
    PREFIX,
    AdminHandler,
    FormError,
    Paging,
    local_input,
    money_input,
    parse_int,
    parse_money,
    text_field,
)
from backoffice.actions import ImageAction, LotAction, live_lot
from engine.book.errors import GavelError, NotFound
from engine.engine import Engine
from persistence.catalog import LotSpec, SessionSpec, engine_refusal
from persistence.media import MediaTooLarge
from persistence.mongo import Document, iso_utc
from web.catalog_fields import LOT_FIELDS, SESSION_FIELDS, read_lot, read_session
from web.errors import error_body, status_for
from web.http import Fields

SESSION_STATE_LABELS = {1: "scheduled 未开拍", 2: "preview 预展中", 3: "bidding 拍卖中", 4: "ended 已结束"}
LOT_STATE_LABELS = {
    1: "scheduled 未开拍",
    2: "preview 预展中",
    3: "bidding 拍卖中",
    4: "sold 成交",
    5: "unsold 流拍",
    6: "overdue 逾期未支付",
}
TIME_FIELDS = ("preview_start", "preview_end", "bidding_start", "bidding_end")
MAX_SPECS = 50
MAX_IMAGES = 20
UPLOAD_OVERHEAD = 64 * 1024  # multipart headers and the other fields around the file


def session_values(doc: Document, zone: ZoneInfo) -> dict[str, str]:
    """A session document as the strings of its edit form (times in the business zone)."""
    values = {
        "title": doc.get("title", ""),
        "description": doc.get("description", ""),
        "deposit": money_input(int(doc.get("deposit", 0))),
        "soft_close_seconds": str(doc.get("soft_close_seconds", 0)),
        "soft_close_cap_seconds": str(doc.get("soft_close_cap_seconds", 0)),
    }
    for name in TIME_FIELDS:
        values[name] = local_input(doc[name], zone)
    return values


def lot_values(doc: Document) -> dict[str, str]:
    unit = doc.get("unit")
    return {
        "catalogue_no": doc.get("catalogue_no", ""),
        "title": doc.get("title", ""),
        "description": doc.get("description", ""),
        "start_price": money_input(int(doc.get("start_price", 0))),
        "unit": money_input(int(unit)) if unit is not None else "",
        "reserve_price": money_input(int(doc.get("reserve_price", 0))),
        "highest_price": money_input(int(doc.get("highest_price", 0))),
        "deposit": money_input(int(doc.get("deposit", 0))),
    }


def session_state(ctx_engine: Any, session_id: int) -> int | None:
    live = ctx_engine.book.sessions.get(session_id)
    return int(live.state) if live is not None else None


def lot_live(engine: Engine, lot_id: int) -> Document | None:
    return live_lot(engine, lot_id)


class CatalogPage(AdminHandler):
    area = "auctions"
    nav = "sessions"

    def state_labels(self) -> dict[str, Any]:
        return {"session_states": SESSION_STATE_LABELS, "lot_states": LOT_STATE_LABELS}

    # -- reading forms ---------------------------------------------------------------------------
    def session_form(self) -> dict[str, Any]:
        """The session form as REST JSON, then read (validated) like the REST API reads it."""
        data: dict[str, Any] = {
            "title": text_field(self.form("title"), "Title", max_length=100),
            "description": text_field(
                self.form("description"), "Description", max_length=5000, required=False, multiline=True
            ),
            "deposit": parse_money(self.form("deposit"), "Session deposit") or 0,
            "soft_close_seconds": parse_int(
                self.form("soft_close_seconds") or "0", "Soft-close window (s)", maximum=3600
            ),
            "soft_close_cap_seconds": parse_int(
                self.form("soft_close_cap_seconds") or "0", "Soft-close cap (s)", maximum=7 * 86_400
            ),
        }
        for name in TIME_FIELDS:
            label = name.replace("_", " ").capitalize()
            data[name] = iso_utc(self.form_time(name, label))
        return read_session(Fields(data, SESSION_FIELDS), partial=True)

    def lot_form(self, existing: Document | None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "catalogue_no": text_field(self.form("catalogue_no"), "Catalogue number", max_length=32),
            "title": text_field(self.form("title"), "Title", max_length=100),
            "description": text_field(
                self.form("description"), "Description", max_length=5000, required=False, multiline=True
            ),
            "start_price": parse_money(self.form("start_price"), "Start price", minimum=1),
            "reserve_price": parse_money(self.form("reserve_price"), "Reserve price", required=False) or 0,
            "highest_price": parse_money(self.form("highest_price"), "Reference high price", required=False)
            or 0,
            "deposit": parse_money(self.form("deposit"), "Lot deposit", required=False) or 0,
            "specs": self.specs_form(),
        }
        unit = parse_money(self.form("unit"), "Increment", minimum=1, required=False)
        if unit is not None:
            data["unit"] = unit
            data["increment_bands"] = None
        elif existing is None or existing.get("increment_bands") is None:
            raise FormError("Increment: required")
        return read_lot(Fields(data, LOT_FIELDS), partial=True)

    def specs_form(self) -> list[dict[str, str]]:
        keys, values = self.form_list("spec_key"), self.form_list("spec_value")
        specs = []
        for index, raw_key in enumerate(keys):
            key = raw_key.strip()
            value = values[index].strip() if index < len(values) else ""
            if not key and not value:
                continue
            if not key or not value:
                raise FormError(f"Specs: line {index + 1} needs both a name and a value")
            specs.append({"key": key, "value": value})
        if len(specs) > MAX_SPECS:
            raise FormError(f"Specs: at most {MAX_SPECS} lines")
        return specs


# -- sessions --------------------------------------------------------------------------------------------
class SessionsHandler(CatalogPage):
    async def get(self) -> None:
        size = 20
        page = self.query_int("page", 1)
        total = await self.ctx.db.sessions.count_documents({})
        paging = Paging(page, size, total)
        cursor = self.ctx.db.sessions.find({}).sort([("bidding_start", -1), ("_id", -1)])
        sessions = [doc async for doc in cursor.skip(paging.skip).limit(size)]
        book = self.ctx.engine.book
        for doc in sessions:
            live = book.sessions.get(int(doc["_id"]))
            doc["state"] = int(live.state) if live is not None else None
            doc["lot_count"] = len(live.lot_ids) if live is not None else 0
        self.render(
            "sessions.html", sessions=sessions, paging=paging, page_title="Sessions", **self.state_labels()
        )


class SessionNewHandler(CatalogPage):
    def get(self) -> None:
        self.render("session_new.html", values={}, error=None, page_title="New session")

    async def post(self) -> None:
        try:
            values = self.session_form()
            doc = await self.actions.create_session(self.actor(), SessionSpec(**values))
        except GavelError as error:
            self.set_status(400 if error.code == "VALIDATION" else 409)
            self.render("session_new.html", values=self.echo(), error=error.message, page_title="New session")
            return
        self.done(f"Session {doc['_id']} created.", f"{PREFIX}/sessions/{doc['_id']}")

    def echo(self) -> dict[str, str]:
        return {name: self.form(name) for name in SESSION_FIELDS}


class SessionHandler(CatalogPage):
    async def get(self, raw_id: str) -> None:
        session_id = self.path_id(raw_id, "session")
        await self.show(session_id, values=None, error=None)

    async def show(self, session_id: int, *, values: dict[str, str] | None, error: str | None) -> None:
        doc = await self.ctx.catalog.session_document(session_id)
        lots = [lot async for lot in self.ctx.db.lots.find({"session_id": session_id}).sort("_id", 1)]
        for lot in lots:
            lot["live"] = lot_live(self.ctx.engine, int(lot["_id"]))
        coupons = [c async for c in self.ctx.db.coupons.find({"session_id": session_id}).sort("_id", 1)]
        self.render(
            "session.html",
            session=doc,
            state=session_state(self.ctx.engine, session_id),
            lots=lots,
            coupons=coupons,
            values=values if values is not None else session_values(doc, self.zone),
            error=error,
            page_title=f"Session {session_id}",
            **self.state_labels(),
        )

    async def post(self, raw_id: str) -> None:
        session_id = self.path_id(raw_id, "session")
        await self.ctx.catalog.session_document(session_id)  # 404 before reading the form
        try:
            changes = self.session_form()
            await self.actions.update_session(self.actor(), session_id, changes)
        except GavelError as error:
            self.set_status(400 if error.code == "VALIDATION" else 409)
            values = {name: self.form(name) for name in SESSION_FIELDS}
            await self.show(session_id, values=values, error=error.message)
            return
        self.done("Session saved.", f"{PREFIX}/sessions/{session_id}")


# -- lots ------------------------------------------------------------------------------------------------
class LotNewHandler(CatalogPage):
    async def get(self, raw_id: str) -> None:
        session = await self.ctx.catalog.session_document(self.path_id(raw_id, "session"))
        self.render("lot_new.html", session=session, values={}, specs=[], error=None, page_title="New lot")

    async def post(self, raw_id: str) -> None:
        session_id = self.path_id(raw_id, "session")
        session = await self.ctx.catalog.session_document(session_id)
        try:
            values = self.lot_form(None)
            values.setdefault("unit", None)
            doc = await self.actions.create_lot(self.actor(), session_id, LotSpec(**values))
        except GavelError as error:
            self.set_status(400 if error.code == "VALIDATION" else 409)
            self.render(
                "lot_new.html",
                session=session,
                values={name: self.form(name) for name in LOT_FIELDS},
                specs=self.echo_specs(),
                error=error.message,
                page_title="New lot",
            )
            return
        self.done(f"Lot {doc['_id']} created. Add its images below.", f"{PREFIX}/lots/{doc['_id']}")

    def echo_specs(self) -> list[dict[str, str]]:
        keys, values = self.form_list("spec_key"), self.form_list("spec_value")
        return [{"key": k, "value": values[i] if i < len(values) else ""} for i, k in enumerate(keys)]


class LotHandler(CatalogPage):
    async def get(self, raw_id: str) -> None:
        await self.show(self.path_id(raw_id, "lot"), values=None, specs=None, error=None)

    async def show(
        self,
        lot_id: int,
        *,
        values: dict[str, str] | None,
        specs: list[dict[str, str]] | None,
        error: str | None,
    ) -> None:
        doc = await self.ctx.catalog.lot_document(lot_id)
        session = await self.ctx.catalog.session_document(int(doc["session_id"]))
        live = lot_live(self.ctx.engine, lot_id)
        leader = ""
        if live is not None and live["leader"]:
            leader = self.ctx.pseudonym(int(doc["session_id"]), int(live["leader"]))
        self.render(
            "lot.html",
            lot=doc,
            session=session,
            live=live,
            leader=leader,
            values=values if values is not None else lot_values(doc),
            specs=specs if specs is not None else list(doc.get("specs", ())),
            error=error,
            max_mib=self.services.media.max_bytes // (1024 * 1024),
            page_title=f"Lot {doc.get('catalogue_no', '')}",
            **self.state_labels(),
        )

    async def post(self, raw_id: str) -> None:
        lot_id = self.path_id(raw_id, "lot")
        old = await self.ctx.catalog.lot_document(lot_id)
        try:
            changes = self.lot_form(old)
            await self.actions.update_lot(self.actor(), lot_id, changes)
        except GavelError as error:
            self.set_status(400 if error.code == "VALIDATION" else 409)
            keys, vals = self.form_list("spec_key"), self.form_list("spec_value")
            specs = [{"key": k, "value": vals[i] if i < len(vals) else ""} for i, k in enumerate(keys)]
            await self.show(
                lot_id, values={n: self.form(n) for n in LOT_FIELDS}, specs=specs, error=error.message
            )
            return
        self.done("Lot saved.", f"{PREFIX}/lots/{lot_id}")


class LotCommandHandler(CatalogPage):
    """Open or close a lot early, or cancel it with a reason: the engine decides if it is legal."""

    async def post(self, raw_id: str, action: str) -> None:
        lot_id = self.path_id(raw_id, "lot")
        back = self.form("back") if self.form("back").startswith(PREFIX + "/") else f"{PREFIX}/lots/{lot_id}"

        async def run() -> None:
            if lot_id not in self.ctx.engine.book.lots:
                raise NotFound(f"lot {lot_id} is not live in the engine")
            reason = text_field(self.form("reason"), "Reason", max_length=200, required=action == "cancel")
            verb: LotAction = "cancel" if action == "cancel" else "open" if action == "open" else "close"
            outcome = await self.actions.lot_command(self.actor(), lot_id, verb, reason)
            if not outcome.ok:
                raise engine_refusal(outcome, state_code="ILLEGAL_STATE")
            after = lot_live(self.ctx.engine, lot_id)
            state = LOT_STATE_LABELS.get(after["state"] if after else 0, "?")
            self.done(f"Lot {lot_id}: {action} done; it is now {state}.", back)

        await self.guarded(run, back=back)


# -- images ------------------------------------------------------------------------------------------------
@tornado.web.stream_request_body
class UploadHandler(CatalogPage):
    """Multipart image upload (a form, or the page's script with FormData + X-XSRFToken).

    The body is streamed so the size limit is the media store's (not the server's 1 MiB), and a
    larger body is dropped as it arrives. XSRF is checked once the body (and its `_xsrf`) is read.
    """

    def initialize(self, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(**kwargs)
        self._chunks: list[bytes] = []
        self._received = 0
        self._too_large = False

    def limit(self) -> int:
        return self.services.media.max_bytes + UPLOAD_OVERHEAD

    async def prepare(self) -> None:
        user, _ = await self._admin_from_request()
        self.admin_user = user if user is not None and user.is_admin else None
        if self.admin_user is None:
            self.refuse(signed_in=user is not None)
            return
        self.current_user = self.admin_user
        self.check_area()  # before a byte of the upload is kept
        declared = self.request.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > self.limit():
            raise MediaTooLarge(f"images are limited to {self.services.media.max_bytes // (1024 * 1024)} MiB")
        connection = self.request.connection
        setter = getattr(connection, "set_max_body_size", None)
        if setter is not None:
            setter(self.limit())

    def data_received(self, chunk: bytes) -> None:
        if self._too_large:
            return
        self._received += len(chunk)
        if self._received > self.limit():
            self._too_large = True
            self._chunks.clear()
            return
        self._chunks.append(chunk)

    def read_upload(self) -> bytes:
        """Parse the multipart body, check XSRF, and return the file's bytes."""
        if self._too_large:
            raise MediaTooLarge(f"images are limited to {self.services.media.max_bytes // (1024 * 1024)} MiB")
        body = b"".join(self._chunks)
        arguments: dict[str, list[bytes]] = {}
        files: dict[str, list[tornado.httputil.HTTPFile]] = {}
        tornado.httputil.parse_body_arguments(
            self.request.headers.get("Content-Type", ""), body, arguments, files, self.request.headers
        )
        for name, items in arguments.items():
            self.request.body_arguments.setdefault(name, []).extend(items)
            self.request.arguments.setdefault(name, []).extend(items)
        self.check_xsrf_cookie()
        uploads = files.get("image") or []
        if len(uploads) != 1:
            raise FormError("choose one image file")
        data: bytes = uploads[0]["body"]
        return data

    def answer(self, message: str, back: str, payload: dict[str, Any]) -> None:
        if self.answers_json():
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(orjson.dumps({"ok": True, "message": message, **payload}))
            return
        self.done(message, back)

    def refuse_upload(self, error: GavelError, back: str) -> None:
        if self.answers_json():
            self.set_status(status_for(error.code))
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(orjson.dumps(error_body(error.code, error.message)))
            return
        self.failed(f"{error.message} ({error.code})", back)


class LotImageUploadHandler(UploadHandler):
    async def post(self, raw_id: str) -> None:
        lot_id = self.path_id(raw_id, "lot")
        back = f"{PREFIX}/lots/{lot_id}"
        data = self.read_upload()  # XSRF is checked here, before anything else happens
        try:
            old = await self.ctx.catalog.lot_document(lot_id)
            images = list(old.get("images", ()))
            if len(images) >= MAX_IMAGES:
                raise FormError(f"a lot has at most {MAX_IMAGES} images")
            stored = await self.services.media.save(data)
            url = self.services.media_url(stored.path)
            await self.actions.set_lot_images(
                self.actor(), lot_id, "add", images, [*images, url], dataclasses.asdict(stored)
            )
        except GavelError as error:
            self.refuse_upload(error, back)
            return
        self.answer("Image added.", back, {"url": url, "images": [*images, url]})


class SessionCoverUploadHandler(UploadHandler):
    async def post(self, raw_id: str) -> None:
        session_id = self.path_id(raw_id, "session")
        back = f"{PREFIX}/sessions/{session_id}"
        data = self.read_upload()
        try:
            await self.ctx.catalog.session_document(session_id)  # 404 before keeping the file
            stored = await self.services.media.save(data)
            url = self.services.media_url(stored.path)
            await self.actions.set_session_cover(self.actor(), session_id, url, dataclasses.asdict(stored))
        except GavelError as error:
            self.refuse_upload(error, back)
            return
        self.answer("Cover image set.", back, {"url": url})


class LotImageMoveHandler(CatalogPage):
    """Reorder the carousel (the first image is the cover), or remove an image."""

    async def post(self, raw_id: str, raw_index: str, action: str) -> None:
        lot_id = self.path_id(raw_id, "lot")
        back = f"{PREFIX}/lots/{lot_id}"

        async def run() -> None:
            old = await self.ctx.catalog.lot_document(lot_id)
            images = list(old.get("images", ()))
            index = int(raw_index) if raw_index.isdigit() and len(raw_index) < 4 else -1
            if not 0 <= index < len(images) or images[index] != self.form("url"):
                raise FormError("the images changed meanwhile; look again and retry")
            moved = list(images)
            if action == "remove":
                moved.pop(index)
            elif action == "cover":
                moved.insert(0, moved.pop(index))
            else:
                target = index - 1 if action == "up" else index + 1
                if not 0 <= target < len(moved):
                    raise FormError("that image cannot move further")
                moved[index], moved[target] = moved[target], moved[index]
            verb: ImageAction = (
                "remove"
                if action == "remove"
                else "cover"
                if action == "cover"
                else ("up" if action == "up" else "down")
            )
            await self.actions.set_lot_images(self.actor(), lot_id, verb, images, moved)
            self.done("Images updated.", back)

        await self.guarded(run, back=back)


class SessionCoverRemoveHandler(CatalogPage):
    async def post(self, raw_id: str) -> None:
        session_id = self.path_id(raw_id, "session")
        back = f"{PREFIX}/sessions/{session_id}"

        async def run() -> None:
            await self.actions.set_session_cover(self.actor(), session_id, "")
            self.done("Cover removed.", back)

        await self.guarded(run, back=back)


ROUTES = [
    (r"/admin/sessions", SessionsHandler),
    (r"/admin/sessions/new", SessionNewHandler),
    (r"/admin/sessions/([0-9]+)", SessionHandler),
    (r"/admin/sessions/([0-9]+)/cover", SessionCoverUploadHandler),
    (r"/admin/sessions/([0-9]+)/cover/remove", SessionCoverRemoveHandler),
    (r"/admin/sessions/([0-9]+)/lots/new", LotNewHandler),
    (r"/admin/lots/([0-9]+)", LotHandler),
    (r"/admin/lots/([0-9]+)/(open|close|cancel)", LotCommandHandler),
    (r"/admin/lots/([0-9]+)/images", LotImageUploadHandler),
    (r"/admin/lots/([0-9]+)/images/([0-9]+)/(up|down|cover|remove)", LotImageMoveHandler),
]
