"""Admin UI fixtures: the whole app (`app_server`, from tests/gateway) and a cookie-keeping client.

async def test_x(admin_client: AdminClient) -> None:
    await admin_client.sign_in()
    page = await admin_client.get("/admin/sessions")
    assert page.status == 200
"""

from __future__ import annotations

import http.cookies
import pathlib
import re
import struct
import urllib.parse
import zlib
from typing import Any

import pytest
import tornado.httpclient

from tests.gateway.conftest import ADMIN_PASSWORD, Answer, AppServer, app_server

__all__ = ["ADMIN_PASSWORD", "AdminClient", "AppServer", "admin_client", "app_server", "png_bytes"]

_XSRF_INPUT = re.compile(rb'name="_xsrf" value="([^"]+)"')


def png_bytes(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 60, 40)) -> bytes:
    """A real (tiny, solid colour) PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def multipart(fields: dict[str, str], files: dict[str, tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "gavel-test-boundary-7d1f"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, content_type, data) in files.items():
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class AdminClient:
    """A browser-like HTTP client: keeps cookies, sends the XSRF token, never follows redirects."""

    def __init__(self, server: AppServer) -> None:
        self.server = server
        self.cookies: dict[str, str] = {}
        self.xsrf: str | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, Any] | list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        xsrf: bool = True,
    ) -> Answer:
        all_headers = dict(headers or {})
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            items = list(form.items()) if isinstance(form, dict) else list(form)
            if xsrf and self.xsrf and not any(k == "_xsrf" for k, _ in items):
                items.append(("_xsrf", self.xsrf))
            body = urllib.parse.urlencode(items).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if body is None and method == "POST":
            body = b""
        request = tornado.httpclient.HTTPRequest(
            self.server.base_url + path,
            method=method,
            headers=all_headers,
            body=body,
            follow_redirects=False,
            request_timeout=30,
            allow_nonstandard_methods=True,
        )
        response = await self.server.http.fetch(request, raise_error=False)
        if response.code == 599:
            raise response.error or RuntimeError("request failed")
        for header in response.headers.get_list("Set-Cookie"):
            jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if not morsel.value:  # a cleared cookie
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        page = response.body or b""
        found = _XSRF_INPUT.search(page)
        if found:
            self.xsrf = found.group(1).decode()
        return Answer(response.code, page, dict(response.headers.get_all()))

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("GET", path, **kwargs)

    async def post(
        self, path: str, form: dict[str, Any] | list[tuple[str, str]] | None = None, **kwargs: Any
    ) -> Answer:
        return await self.request("POST", path, form=form if form is not None else {}, **kwargs)

    async def sign_in(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> Answer:
        await self.get("/admin/login")
        return await self.post("/admin/login", {"username": username, "password": password})

    async def upload(
        self,
        path: str,
        data: bytes,
        *,
        filename: str = "photo.png",
        content_type: str = "image/png",
        json_reply: bool = False,
        xsrf: bool = True,
    ) -> Answer:
        fields = {"_xsrf": self.xsrf or ""} if xsrf else {}
        body, kind = multipart(fields, {"image": (filename, content_type, data)})
        headers = {"Content-Type": kind}
        if json_reply:
            headers["Accept"] = "application/json"
        return await self.request("POST", path, body=body, headers=headers)


@pytest.fixture
async def admin_client(app_server: AppServer, tmp_path: pathlib.Path) -> AdminClient:
    app_server.ctx.media_dir = tmp_path / "media"
    return AdminClient(app_server)
