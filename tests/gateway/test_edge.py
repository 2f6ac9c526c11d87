"""The listening edge (gateway/edge.py): connection caps, timeouts, accept back-off, proxies, TLS,
the per-user websocket cap under concurrent upgrades, chunked 413 and who may read /metrics.

Clients that must count as another address connect from 127.0.0.2 (all of 127/8 is loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import pathlib
import resource
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import tornado.httpclient
import tornado.netutil
import tornado.web
import tornado.websocket
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from composition.app import make_app
from composition.bootstrap import edge_config
from composition.settings import Settings
from gateway.edge import (
    EdgeServer,
    build_edge_server,
    raise_open_file_limit,
    resolve_client,
)
from tests.gateway.conftest import AppServer
from tests.gateway.test_ws import Bidder, open_lot
from web.http import CHUNKED_DRAIN_BYTES

ATTACKER = "127.0.0.2"
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def connect_from(ip: str, port: int) -> socket.socket:
    """A TCP connection from `ip` that sends nothing (non-blocking: the server may not accept)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((ip, 0))
    sock.setblocking(False)
    sock.connect_ex(("127.0.0.1", port))
    return sock


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def log_bytes(caplog: pytest.LogCaptureFixture) -> int:
    return sum(len(record.getMessage()) + len(record.exc_text or "") for record in caplog.records)


async def until(predicate: Callable[[], bool], within_s: float = 20.0) -> None:
    for _ in range(int(within_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("condition not met")


# -- a small server of its own, for the timeouts and headers -----------------------------------
class Echo(tornado.web.RequestHandler):
    """Says who the server thinks is asking, and sets a cookie without `secure`."""

    def get(self) -> None:
        self.set_cookie("probe", "1", httponly=True)
        self.write({"remote_ip": self.request.remote_ip, "protocol": self.request.protocol})


@contextlib.asynccontextmanager
async def small_server(settings: Settings) -> AsyncIterator[tuple[EdgeServer, int]]:
    app = tornado.web.Application([(r"/", Echo)])
    server = build_edge_server(app, edge_config(settings))
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server.add_sockets([sock])
    try:
        yield server, sock.getsockname()[1]
    finally:
        server.stop()
        await server.close_all_connections()


async def fetch(url: str, **kwargs: Any) -> tornado.httpclient.HTTPResponse:
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        return await client.fetch(url, raise_error=False, request_timeout=20, **kwargs)
    finally:
        client.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    with contextlib.suppress(ConnectionError):
        while await asyncio.wait_for(reader.read(65536), 20.0):
            pass
    return True


# -- connection caps -----------------------------------------------------------------------------
async def test_idle_connections_over_the_per_address_cap_leave_others_served_and_bids_acknowledged(
    app_server: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    edge = app_server.edge
    edge.limits.max_connections_per_ip = 20
    port = port_of(app_server.base_url)
    _session_id, lot_id = await open_lot(app_server)
    _user, token = await app_server.register()
    caplog.clear()
    attackers = [connect_from(ATTACKER, port) for _ in range(200)]
    try:
        await until(lambda: edge.refused >= 150)
        assert edge.connections_from(ATTACKER) == 20
        bidder = await Bidder.connect(app_server, token)
        answer = await bidder.bid(lot_id, 10_000, "edge-1")
        assert answer["type"] == "accepted"
        bidder.close()
        assert (await app_server.call("GET", "/api/v1/sessions")).status == 200
    finally:
        for sock in attackers:
            sock.close()
    assert log_bytes(caplog) < 4096


def start_child(log_path: pathlib.Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, str(HERE / "edge_child.py")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


async def test_exhausted_file_descriptors_are_survived_with_one_log_line(tmp_path: pathlib.Path) -> None:
    log_path = tmp_path / "child.log"
    child = start_child(log_path)
    attackers: list[socket.socket] = []
    try:
        assert child.stdout is not None
        port = int(await asyncio.to_thread(child.stdout.readline))
        attackers = [connect_from(ATTACKER, port) for _ in range(120)]  # the child has 64 fds
        # Wait until the child has run out (an accept() failed), then let the attackers go.
        for _ in range(2000):
            if b"out of file descriptors" in log_path.read_bytes():
                break
            await asyncio.sleep(0.01)
        assert b"out of file descriptors" in log_path.read_bytes()
        for sock in attackers:
            sock.close()
        answer = await fetch(f"http://127.0.0.1:{port}/")
        assert answer.code == 200 and int(answer.body) > 0  # served, and it did fail to accept
    finally:
        for sock in attackers:
            sock.close()
        child.terminate()
        child.wait(10)
    assert len(log_path.read_bytes()) < 4096, log_path.read_text()[:2000]


# -- timeouts --------------------------------------------------------------------------------
async def test_a_request_whose_headers_drip_in_slower_than_the_header_timeout_is_dropped() -> None:
    async with small_server(Settings(header_timeout_ms=500, idle_timeout_ms=60_000)) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        dripping = True

        async def drip() -> None:
            while dripping:
                with contextlib.suppress(ConnectionError):
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                await asyncio.sleep(0.05)

        task = asyncio.create_task(drip())
        try:
            assert await closed_by_server(reader)
        finally:
            dripping = False
            await task
            writer.close()
        assert server.timed_out == 1


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() -> None:
    async with small_server(Settings(idle_timeout_ms=500, header_timeout_ms=60_000)) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")  # answered, and kept alive...
        assert await closed_by_server(reader)  # ...until it idled too long
        writer.close()
        silent = connect_from("127.0.0.1", port)  # one that never says anything
        try:
            await until(lambda: server.timed_out == 2)
        finally:
            silent.close()


# -- proxies ---------------------------------------------------------------------------------
def test_forwarded_headers_are_believed_only_from_trusted_proxies() -> None:
    headers = tornado.httputil.HTTPHeaders(
        {"X-Forwarded-For": "203.0.113.9, 198.51.100.7", "X-Forwarded-Proto": "https"}
    )
    local = (ipaddress.ip_network("127.0.0.1/32"),)
    assert resolve_client("127.0.0.1", headers, local) == ("198.51.100.7", "https")
    assert resolve_client("192.0.2.1", headers, local) == ("192.0.2.1", None)  # not a proxy of ours
    assert resolve_client("127.0.0.1", headers, ()) == ("127.0.0.1", None)
    chain = (*local, ipaddress.ip_network("198.51.100.0/24"))
    assert resolve_client("127.0.0.1", headers, chain) == ("203.0.113.9", "https")
    forged = tornado.httputil.HTTPHeaders({"X-Forwarded-For": "not-an-ip, 198.51.100.7"})
    assert resolve_client("127.0.0.1", forged, chain) == ("198.51.100.7", None)


async def test_remote_ip_protocol_cookies_and_hsts_behind_a_trusted_proxy_and_not_otherwise() -> None:
    forwarded = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    trusted = Settings(trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    async with small_server(trusted) as (_server, port):
        answer = await fetch(f"http://127.0.0.1:{port}/", headers=forwarded)
        assert tornado.escape.json_decode(answer.body) == {"remote_ip": "198.51.100.7", "protocol": "https"}
        assert "Secure" in answer.headers["Set-Cookie"]
        assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
        plain = await fetch(f"http://127.0.0.1:{port}/")  # the same connection's next request
        assert tornado.escape.json_decode(plain.body)["remote_ip"] == "127.0.0.1"
    untrusted = Settings(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    async with small_server(untrusted) as (_server, port):
        answer = await fetch(f"http://127.0.0.1:{port}/", headers=forwarded)
        assert tornado.escape.json_decode(answer.body) == {"remote_ip": "127.0.0.1", "protocol": "http"}
        assert "Secure" not in answer.headers["Set-Cookie"]
        assert "Strict-Transport-Security" not in answer.headers


async def test_per_address_websocket_limits_count_the_client_behind_a_trusted_proxy(
    app_server: AppServer,
) -> None:
    app_server.edge.limits.trusted_proxies = (ipaddress.ip_network("127.0.0.1/32"),)
    app_server.ctx.limits.ws_connections_per_ip = 2

    def via_proxy(client: str) -> tornado.httpclient.HTTPRequest:
        return tornado.httpclient.HTTPRequest(app_server.ws_url, headers={"X-Forwarded-For": client})

    sockets = [await tornado.websocket.websocket_connect(via_proxy("198.51.100.7")) for _ in range(2)]
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await tornado.websocket.websocket_connect(via_proxy("198.51.100.7"))
    assert refused.value.code == 429
    sockets.append(await tornado.websocket.websocket_connect(via_proxy("198.51.100.8")))
    assert app_server.ctx.hub.by_ip == {"198.51.100.7": 2, "198.51.100.8": 1}
    for sock in sockets:
        sock.close()


# -- TLS -------------------------------------------------------------------------------------
def self_signed(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_https_and_wss_with_a_self_signed_certificate(
    app_server: AppServer, tmp_path: pathlib.Path
) -> None:
    cert, key = self_signed(tmp_path)
    ctx = app_server.ctx
    config = edge_config(Settings(tls_cert=cert, tls_key=key))
    server = build_edge_server(make_app(ctx), config, websockets=ctx.hub)
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server.add_sockets([sock])
    port = sock.getsockname()[1]
    try:
        _session_id, lot_id = await open_lot(app_server)
        _user, token = await app_server.register()
        health = await fetch(f"https://127.0.0.1:{port}/healthz", ca_certs=str(cert))
        assert health.code == 200
        assert health.headers["Strict-Transport-Security"].startswith("max-age=")
        request = tornado.httpclient.HTTPRequest(
            f"wss://127.0.0.1:{port}/ws?token={token}", ca_certs=str(cert)
        )
        bidder = Bidder(await tornado.websocket.websocket_connect(request))
        assert (await bidder.next())["type"] == "hello"
        answer = await bidder.bid(lot_id, 10_000, "tls-1")
        assert answer["type"] == "accepted"
        bidder.close()
    finally:
        server.stop()
        await server.close_all_connections()


async def test_admin_cookies_are_secure_when_a_trusted_proxy_says_https(app_server: AppServer) -> None:
    app_server.edge.limits.trusted_proxies = (ipaddress.ip_network("127.0.0.1/32"),)
    answer = await app_server.call("GET", "/admin/login", headers={"X-Forwarded-Proto": "https"})
    cookies = [value for key, value in answer.headers.items() if key.lower() == "set-cookie"]
    assert answer.status == 200 and cookies
    assert all("Secure" in cookie for cookie in cookies)
    assert "Strict-Transport-Security" in answer.headers


# -- websockets under concurrent upgrades ----------------------------------------------------------
async def test_concurrent_upgrades_never_exceed_the_per_user_or_per_address_cap(
    app_server: AppServer,
) -> None:
    _user, token = await app_server.register()
    app_server.ctx.limits.websockets_per_user = 3

    async def attempt(url: str) -> Any:
        return await tornado.websocket.websocket_connect(url)

    results = await asyncio.gather(
        *(attempt(f"{app_server.ws_url}?token={token}") for _ in range(20)), return_exceptions=True
    )
    opened = [result for result in results if isinstance(result, tornado.websocket.WebSocketClientConnection)]
    refused = [result for result in results if isinstance(result, tornado.httpclient.HTTPClientError)]
    assert len(opened) == 3 and len(refused) == 17
    assert {error.code for error in refused} == {429}
    for conn in opened:
        conn.close()
    await app_server.wait_for(lambda: not app_server.ctx.hub.user_places)

    # Signed-in upgrades await the token check: the address's places must be taken before it.
    app_server.ctx.limits.websockets_per_user = 100
    app_server.ctx.limits.ws_connections_per_ip = 4
    results = await asyncio.gather(
        *(attempt(f"{app_server.ws_url}?token={token}") for _ in range(20)), return_exceptions=True
    )
    opened = [result for result in results if isinstance(result, tornado.websocket.WebSocketClientConnection)]
    assert len(opened) == 4
    for conn in opened:
        conn.close()


# -- bodies ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [100 * 1024, 3 * 1024 * 1024, 8 * 1024 * 1024 + 0x8000])
async def test_a_chunked_body_over_the_limit_gets_413_like_a_sized_one(
    app_server: AppServer, size: int
) -> None:
    """Up to 8 MiB the body is read and dropped, then answered; past that the answer comes at
    once (the client here stops there and waits, as one that honours an early answer does)."""
    ends = size <= CHUNKED_DRAIN_BYTES
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(app_server.base_url))
    writer.write(
        b"POST /api/v1/auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"

    async def send_body() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(size // 0x4000):
                writer.write(piece)
                await writer.drain()
            if ends:
                writer.write(b"0\r\n\r\n")
                await writer.drain()

    sending = asyncio.create_task(send_body())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
        )
        body = await asyncio.wait_for(reader.readexactly(length), 20)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        writer.close()
    assert head.startswith(b"HTTP/1.1 413"), head
    assert tornado.escape.json_decode(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"


# -- /metrics --------------------------------------------------------------------------------------
async def test_metrics_need_the_token_or_a_loopback_client(app_server: AppServer) -> None:
    assert (await app_server.call("GET", "/metrics")).status == 200  # loopback, no token set
    relayed = await app_server.call("GET", "/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
    assert relayed.status == 404 and relayed.code == "NOT_FOUND"  # an untrusted local proxy's client
    app_server.edge.limits.trusted_proxies = (ipaddress.ip_network("127.0.0.1/32"),)
    proxied = await app_server.call("GET", "/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
    assert proxied.status == 404 and proxied.code == "NOT_FOUND"  # the real client is not local

    app_server.ctx.limits.metrics_token = "scrape-token-0123456789"
    assert (await app_server.call("GET", "/metrics")).code == "UNAUTHORIZED"
    wrong = await app_server.call("GET", "/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and wrong.code == "UNAUTHORIZED"
    right = await app_server.call(
        "GET",
        "/metrics",
        headers={"Authorization": "Bearer scrape-token-0123456789", "X-Forwarded-For": "198.51.100.7"},
    )
    assert right.status == 200 and b"gavel_bids_total" in right.body


def test_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        raised = raise_open_file_limit()
        assert raised == resource.getrlimit(resource.RLIMIT_NOFILE)[0] > lowered or lowered == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_edge_limits_come_from_settings() -> None:
    limits = edge_config(Settings(idle_timeout_ms=1500, max_connections_per_ip=7)).limits
    assert limits.idle_timeout_s == 1.5 and limits.max_connections_per_ip == 7
