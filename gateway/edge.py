"""The listening edge: what one client may hold open, how long it may idle, who may say who it is.

`EdgeServer` is Tornado's `HTTPServer` with its own accept loop and per-connection bookkeeping:

- connections per client address (HTTP and websockets alike, `MAX_CONNECTIONS_PER_IP`) and in
  all (`MAX_CONNECTIONS`) are capped at accept time: over a cap the socket is closed at once,
  before any byte is read or a TLS handshake is started;
- a keep-alive connection with no request for `IDLE_TIMEOUT` is closed, and a request whose
  headers take longer than `HEADER_TIMEOUT` from their first byte is dropped (slowloris). Tornado's
  own `idle_connection_timeout` is one timer from the end of the previous request to the end of
  the next request's headers, so it cannot tell an idle phone from a slow attacker; here a sweep
  does (Tornado's timer stays as a backstop at the sum of both); the body has `HEADER_TIMEOUT`
  too (Tornado's `body_timeout`);
- accept errors (EMFILE/ENFILE when descriptors run out) pause accepting with a doubling back-off
  instead of spinning on a readable listening socket, and are logged once per minute at most;
- `X-Forwarded-For` / `X-Forwarded-Proto` are believed only from `TRUSTED_PROXIES`, so the
  request's `remote_ip` (access log, websocket limits, `/metrics`' loopback rule) and `protocol`
  (Secure cookies, HSTS) are the real client's; from anyone else they are ignored;
- over HTTPS (directly, or as a trusted proxy says) every answer carries HSTS and every cookie
  is `Secure`.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import logging
import pathlib
import resource
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import tornado.httpserver
import tornado.httputil
import tornado.ioloop
import tornado.iostream
from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection

log = logging.getLogger("gavel.edge")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network  # a TRUSTED_PROXIES entry

MAX_BODY_BYTES = 1 << 20  # Tornado's own cap; handlers refuse far less (web/http.py)
HSTS = "max-age=31536000"
# Errors that mean "out of descriptors or kernel memory": accepting again at once would fail again.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_BACKOFF_S = (0.05, 1.0)  # first pause, longest pause
ACCEPTS_PER_TURN = 128  # like Tornado's loop: other work runs between bursts of accepts
LOG_EVERY_S = 60.0


@dataclasses.dataclass
class EdgeLimits:
    """The edge's limits; mutable so a test can tighten them on a running server."""

    max_connections_per_ip: int = 256
    max_connections: int = 20_000
    idle_timeout_s: float = 60.0
    header_timeout_s: float = 10.0
    trusted_proxies: tuple[Network, ...] = ()


@dataclasses.dataclass(frozen=True)
class EdgeConfig:
    """What the edge server is built from: plain values that composition/bootstrap.py `edge_config`
    takes from the Settings (the gateway never reads them)."""

    limits: EdgeLimits = dataclasses.field(default_factory=EdgeLimits)
    tls_cert: pathlib.Path | None = None  # TLS_CERT / TLS_KEY: both, or plain HTTP
    tls_key: pathlib.Path | None = None


class WebsocketCounts(Protocol):
    """What the edge reads from the websocket hub: upgraded sockets leave Tornado's HTTP
    connection set (and may leave its IOStream, gateway/wire.py), so the hub counts them."""

    @property
    def by_ip(self) -> Mapping[str, int]: ...

    @property
    def socket_count(self) -> int: ...


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (the default soft 1024 is a few hundred
    phones); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("cannot raise the open file limit above %d", soft)
    return soft


def is_trusted(ip: str, networks: tuple[Network, ...]) -> bool:
    if not networks or not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def resolve_client(
    peer_ip: str, headers: tornado.httputil.HTTPHeaders, networks: tuple[Network, ...]
) -> tuple[str, str | None]:
    """(client address, scheme or None) behind trusted proxies; the peer itself otherwise.

    X-Forwarded-For is read from the right: each hop a trusted proxy added is believed, the
    first address not in TRUSTED_PROXIES is the client (whatever is left of it, the client may
    have forged). X-Forwarded-Proto is the value the trusted peer set (its last one).
    """
    if not is_trusted(peer_ip, networks):
        return peer_ip, None
    client = peer_ip
    hops = ",".join(headers.get_list("X-Forwarded-For")).split(",")
    for hop in reversed(hops):
        if not is_trusted(client, networks):
            break
        candidate = hop.strip()
        try:
            client = str(ipaddress.ip_address(candidate))
        except ValueError:
            break  # garbage is not an address: the last believed hop stands
    protos = ",".join(headers.get_list("X-Forwarded-Proto")).split(",")
    proto = protos[-1].strip().lower()
    return client, proto if proto in ("http", "https") else None


def secure_headers(headers: tornado.httputil.HTTPHeaders) -> None:
    """HSTS, and `Secure` on every cookie: for an answer to a request that came over HTTPS."""
    headers["Strict-Transport-Security"] = HSTS
    cookies = headers.get_list("Set-Cookie")
    if cookies and not all("; secure" in cookie.lower() for cookie in cookies):
        del headers["Set-Cookie"]
        for cookie in cookies:
            headers.add("Set-Cookie", cookie if "; secure" in cookie.lower() else cookie + "; Secure")


class RateLimitedLog:
    """One log line per key per LOG_EVERY_S; the next one says how many were left out."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -LOG_EVERY_S) < LOG_EVERY_S:
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return
        self._last[key] = now
        quiet = self._quiet.pop(key, 0)
        log.warning(message + " (%d more like it since the last line)", *args, quiet)


@dataclasses.dataclass(slots=True)
class _Tracked:
    ip: str
    stream: tornado.iostream.IOStream
    since: float  # when it started waiting for a request
    waiting: bool = True  # between requests (False while a request is being answered)
    first_byte: float | None = None  # when the waiting request's first bytes were seen


class EdgeServer(tornado.httpserver.HTTPServer):
    """`HTTPServer` with the edge's caps, timeouts, accept back-off and proxy resolution."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: Any,
        limits: EdgeLimits | None = None,
        websockets: WebsocketCounts | None = None,
        **kwargs: Any,
    ) -> None:
        self.limits = limits or EdgeLimits()
        self.websockets = websockets
        super().initialize(request_callback, **kwargs)
        self._tracked: dict[HTTP1ServerConnection, _Tracked] = {}
        self._by_ip: dict[str, int] = {}
        self._quiet = RateLimitedLog()
        self._sweeper: tornado.ioloop.PeriodicCallback | None = None
        self.refused = 0  # connections closed at accept (over a cap)
        self.timed_out = 0  # connections closed idle or mid-headers
        self.accept_errors = 0

    # -- counts ------------------------------------------------------------------------------
    def connections_from(self, ip: str) -> int:
        sockets = self.websockets.by_ip.get(ip, 0) if self.websockets is not None else 0
        return self._by_ip.get(ip, 0) + sockets

    @property
    def connection_count(self) -> int:
        sockets = self.websockets.socket_count if self.websockets is not None else 0
        return len(self._tracked) + sockets

    # -- accepting ---------------------------------------------------------------------------
    def add_sockets(self, sockets: Any) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_from(sock)
        if self._sweeper is None:
            self._sweeper = tornado.ioloop.PeriodicCallback(self._sweep, 1000 * self._sweep_every())
            self._sweeper.start()

    def _accept_from(self, sock: socket.socket) -> Callable[[], None]:
        """Tornado's accept loop, except that an error pauses accepting instead of raising out of
        the handler on every loop turn while the socket stays readable (a log flood)."""
        io_loop = tornado.ioloop.IOLoop.current()
        state = {"removed": False, "paused": False, "pause_s": 0.0}

        def resume() -> None:
            if not state["removed"]:
                state["paused"] = False
                io_loop.add_handler(sock, on_readable, tornado.ioloop.IOLoop.READ)

        def on_readable(_fd: Any, _events: int) -> None:
            for _ in range(ACCEPTS_PER_TURN):
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as error:
                    self.accept_errors += 1
                    first, longest = ACCEPT_BACKOFF_S
                    pause = min(longest, max(first, 2 * float(state["pause_s"])))
                    state["pause_s"], state["paused"] = pause, True
                    io_loop.remove_handler(sock)
                    io_loop.call_later(pause, resume)
                    reason = "out of file descriptors" if error.errno in RESOURCE_ERRNOS else "failed"
                    self._quiet.warning(
                        "accept",
                        "accept() %s (%s); pausing accepts, %d errors so far, %d connections open",
                        reason,
                        errno.errorcode.get(error.errno or 0, str(error.errno)),
                        self.accept_errors,
                        self.connection_count,
                    )
                    return
                state["pause_s"] = 0.0
                self._admit(connection, address)

        def remove() -> None:
            if not state["removed"] and not state["paused"]:
                io_loop.remove_handler(sock)
            state["removed"] = True

        io_loop.add_handler(sock, on_readable, tornado.ioloop.IOLoop.READ)
        return remove

    def _admit(self, connection: socket.socket, address: Any) -> None:
        ip = address[0] if isinstance(address, tuple) and address else ""
        limits = self.limits
        over_total = self.connection_count >= limits.max_connections
        # A trusted proxy carries many clients: only the total binds it (its clients' websockets
        # are counted under their own addresses by the hub).
        over_ip = (
            not over_total
            and self.connections_from(ip) >= limits.max_connections_per_ip
            and not is_trusted(ip, limits.trusted_proxies)
        )
        if over_total or over_ip:
            self.refused += 1
            self._quiet.warning(
                "refused-total" if over_total else "refused-ip",
                "refusing connections: %s (%d refused so far)",
                f"{limits.max_connections} open in all"
                if over_total
                else f"{limits.max_connections_per_ip} open from {ip}",
                self.refused,
            )
            connection.close()
            return
        self._handle_connection(connection, address)

    # -- per connection ----------------------------------------------------------------------
    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        ip = address[0] if isinstance(address, tuple) and address else ""
        context = tornado.httpserver._HTTPRequestContext(stream, address, self.protocol, None)
        conn = HTTP1ServerConnection(stream, self.conn_params, context)
        self._connections.add(conn)
        self._tracked[conn] = _Tracked(ip, stream, time.monotonic())
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1
        conn.start_serving(self)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        tracked = self._tracked.pop(server_conn, None)  # type: ignore[call-overload]
        if tracked is not None:
            left = self._by_ip.get(tracked.ip, 1) - 1
            if left > 0:
                self._by_ip[tracked.ip] = left
            else:
                self._by_ip.pop(tracked.ip, None)

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        tracked = self._tracked.get(server_conn)  # type: ignore[call-overload]
        if tracked is not None:  # a new request is awaited on this connection: idle from now
            tracked.since, tracked.waiting, tracked.first_byte = time.monotonic(), True, None
        delegate = super().start_request(server_conn, request_conn)
        assert isinstance(request_conn, HTTP1Connection)
        return _EdgeDelegate(delegate, request_conn, tracked, self.limits.trusted_proxies)

    def _sweep_every(self) -> float:
        shortest = min(self.limits.idle_timeout_s, self.limits.header_timeout_s)
        return min(1.0, max(0.05, shortest / 4))

    def _sweep(self) -> None:
        """Close connections idle past IDLE_TIMEOUT or mid-headers past HEADER_TIMEOUT."""
        assert self._sweeper is not None
        self._sweeper.callback_time = 1000 * self._sweep_every()
        now = time.monotonic()
        idle, header = self.limits.idle_timeout_s, self.limits.header_timeout_s
        expired = []
        for tracked in self._tracked.values():
            if not tracked.waiting:
                continue
            # Bytes of the next request wait in the stream's buffer until its headers are whole
            # (a private attribute of IOStream; gateway/wire.py reads it too).
            if tracked.first_byte is None and tracked.stream._read_buffer_size:
                tracked.first_byte = now
            if tracked.first_byte is not None:
                if now - tracked.first_byte > header:
                    expired.append(tracked)
            elif now - tracked.since > idle:
                expired.append(tracked)
        for tracked in expired:
            self.timed_out += 1
            tracked.stream.close()

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        super().stop()


class _EdgeDelegate(tornado.httputil.HTTPMessageDelegate):
    """Resolves the client behind a trusted proxy for one request, marks the connection busy,
    and makes HTTPS answers carry HSTS and Secure cookies."""

    def __init__(
        self,
        delegate: tornado.httputil.HTTPMessageDelegate,
        request_conn: HTTP1Connection,
        tracked: _Tracked | None,
        trusted: tuple[Network, ...],
    ) -> None:
        self.delegate = delegate
        self.request_conn = request_conn
        self.tracked = tracked
        self.trusted = trusted
        context = request_conn.context
        self._original = (context.remote_ip, context.protocol)  # type: ignore[attr-defined]

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        if self.tracked is not None:
            self.tracked.waiting = False
        context: Any = self.request_conn.context
        ip, proto = resolve_client(context.remote_ip, headers, self.trusted)
        context.remote_ip = ip
        if proto is not None:
            context.protocol = proto
        if context.protocol == "https":
            write_headers = self.request_conn.write_headers

            def write_secure_headers(
                start_line: Any, headers: tornado.httputil.HTTPHeaders, chunk: bytes | None = None
            ) -> Any:
                secure_headers(headers)
                return write_headers(start_line, headers, chunk)

            self.request_conn.write_headers = write_secure_headers  # type: ignore[method-assign]
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self._restore()
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self._restore()
        self.delegate.on_connection_close()

    def _restore(self) -> None:
        # The context is the connection's: the next request on it starts from the peer again.
        context: Any = self.request_conn.context
        context.remote_ip, context.protocol = self._original


def tls_context(config: EdgeConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    return context


def build_edge_server(
    app: Any, config: EdgeConfig, *, websockets: WebsocketCounts | None = None
) -> EdgeServer:
    """The server run.py (and the tests' app_server) listens with: `config`'s limits, TLS when
    TLS_CERT/TLS_KEY are set; `websockets` (the hub) counts upgraded sockets in the caps."""
    limits = config.limits
    return EdgeServer(
        app,
        limits=limits,
        websockets=websockets,
        xheaders=False,  # resolved here, from TRUSTED_PROXIES only
        ssl_options=tls_context(config),
        max_body_size=MAX_BODY_BYTES,
        # Tornado's one timer from the end of a request to the next one's headers: a backstop.
        idle_connection_timeout=limits.idle_timeout_s + limits.header_timeout_s,
        body_timeout=limits.header_timeout_s,
    )
