"""The write-behind in a process of its own, beside the engine's process.

Preparing and writing the archive (bid buckets, the `lots`/`sessions` mirror, the settlement
outbox; `persistence/archive.py`) cost the engine's process about 60 µs of CPU per bid, on the
same loop as every websocket: it halved the closed-loop rate and was most of the ack latency tail
(docs/performance.md). Here the engine's process only hands the bytes it has just written to its
journal to a child process over a pipe, the group commits of every 10 ms in one write. The child
runs under Linux's SCHED_IDLE (it gets the CPU only when nothing else wants it). It replays them into a
read-only replica of the book (`Engine.follow`, as the scale-out gateways do) and feeds the events
to the same `BidArchiver`.

The pipe, parent to child: first the u64 (little-endian) `durable_seq`, the last seq the journal
held when the child was started; then the framed journal records of every group commit after it,
exactly as written to the journal and only after its fsync. The child starts from the newest
snapshot, reads the journal files (read-only) up to `durable_seq`, then the pipe: records are
never missed (everything up to `durable_seq` is in the files) and never archived twice (the
replica skips seqs it has, and the archive's writes are idempotent). Only durable records reach
the archive: nothing is stored that a power cut could take out of the journal.

Child to parent: `(written_through, lag)` as two u64, whenever either changes (checked every
`REPORT_INTERVAL` s): every event up to `written_through` is in MongoDB, `lag` events are not yet.
The engine's snapshot waits on it (`before_snapshot`), so the journal is pruned only behind what
the child has stored.

A child that dies is started again (with backoff) and picks up from the `archived_seq` stored in
MongoDB; meanwhile nothing is lost, the journal keeps it. A child more than `PIPE_BACKLOG_LIMIT`
bytes behind on the pipe is replaced the same way (at once), so the engine's process never holds
an unbounded share of the journal in memory for it. A parent that dies closes the pipe: the
child writes what it holds and exits. Ctrl-C reaches the whole process group: the child ignores
SIGINT and waits for its parent to close the pipe.

    python -m persistence.archive_process --journal-dir var/journal --mongodb-url URL ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import struct
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from engine import journal
from engine.book.events import LotClosed
from engine.clock import SystemClock
from engine.engine import Engine
from persistence import mongo
from persistence.archive import BidArchiver, SeqWaiters, archive_meta_id, read_archive_meta
from persistence.logs import setup_logging
from persistence.snapshots import FileSnapshotSink, LocalFirstSnapshotSink, MongoSnapshotSink

__all__ = ["ArchiverProcess", "FramedRecordReader"]

log = logging.getLogger("gavel.archive.process")

ROOT = Path(__file__).resolve().parent.parent
REPORT_INTERVAL = 0.02  # seconds between two looks at the child's progress
# The engine's process gathers group commits for this long before one write to the pipe: at a few
# bids per group commit, a write (and a wake-up of the child) per commit cost both processes more
# than the records themselves. The archive is written every few seconds anyway.
PIPE_FLUSH_INTERVAL = 0.01
# Bytes the pipe may hold unread (the child starved of CPU or stuck) before the child is restarted,
# to catch up from the journal files instead of the engine's memory.
PIPE_BACKLOG_LIMIT = 64 << 20
_SEQ = struct.Struct("<Q")
_REPORT = struct.Struct("<QQ")
_JOURNAL_HEADER = journal.FILE_HEADER
_REPLAY_PIECE = 20_000  # journal records replayed between two turns of the child's loop


class FramedRecordReader:
    """Cuts a byte stream of framed journal records into whole records (a pipe splits anywhere)."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The records completed by `data`; raises ValueError on a damaged record."""
        pending = self._pending
        pending += data
        records, end = journal.scan_segment(_JOURNAL_HEADER + pending)
        consumed = end - len(_JOURNAL_HEADER) if end else 0
        del pending[:consumed]
        if len(pending) >= journal.RECORD_HEADER_SIZE:
            size = int.from_bytes(pending[:4], "little")
            if size > journal.MAX_PAYLOAD or len(pending) >= journal.RECORD_HEADER_SIZE + size:
                # Whole but not accepted by the scan: a bad length or CRC, not a record in transit.
                raise ValueError("damaged journal record in the archiver's pipe")
        return records

    @property
    def pending(self) -> int:
        """Bytes of a record not yet complete."""
        return len(self._pending)


# -- the parent's side ------------------------------------------------------------------------------
class ArchiverProcess:
    """Runs and feeds the archiver child; offers the surface the service uses of a `BidArchiver`."""

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        *,
        mongodb_url: str,
        journal_dir: Path,
        snapshot_prefix: str = "",
        snapshot_dir: Path | None = None,
        engine_id: str = "",
        log_level: str = "INFO",
        archiver_options: dict[str, float] | None = None,
        flush_timeout: float = 3.0,
        nice: int = int(os.environ.get("GAVEL_ARCHIVER_NICE", "10")),
        cpu_policy: str = os.environ.get("GAVEL_ARCHIVER_CPU", "idle"),
        backlog_limit: int = PIPE_BACKLOG_LIMIT,
        min_restart_delay: float = 0.2,
        max_restart_delay: float = 10.0,
    ) -> None:
        self.db = db
        self.meta_id = archive_meta_id(engine_id)
        self.command = [
            sys.executable,
            "-m",
            "persistence.archive_process",
            "--journal-dir",
            str(Path(journal_dir).resolve()),
            "--mongodb-db",
            db.name,
            "--snapshot-prefix",
            snapshot_prefix,
            "--engine-id",
            engine_id,
            "--log-level",
            log_level,
            "--options",
            json.dumps(archiver_options or {}),
            "--flush-timeout",
            str(flush_timeout),
            "--nice",
            str(nice),
            "--cpu",
            cpu_policy,
        ]
        if snapshot_dir is not None:
            # The engine's local copies (LocalFirstSnapshotSink): read first, as the engine does.
            self.command += ["--snapshot-dir", str(Path(snapshot_dir).resolve())]
        # The URL may carry a password: the environment, not the command line others can read.
        self.env = {**os.environ, "GAVEL_ARCHIVER_MONGODB_URL": mongodb_url}
        self.flush_timeout = flush_timeout
        self.min_restart_delay = min_restart_delay
        self.max_restart_delay = max_restart_delay
        self.backlog_limit = backlog_limit
        self._durable_seq = 0
        self._archived_seq = 0
        self._lag = 0
        self._process: asyncio.subprocess.Process | None = None
        self._feeding = False  # the current child has its header and takes records
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._waiters = SeqWaiters()
        self._outgoing: list[bytes] = []  # group commits gathered for the next write to the pipe
        self._flush_timer: asyncio.TimerHandle | None = None
        self._overflowed = False  # the last child was stopped for falling behind, not a failure
        self.stats = {
            "starts": 0,
            "records_bytes": 0,
            "dropped_while_down": 0,
            "pipe_writes": 0,
            "overflows": 0,
        }

    # -- observing ------------------------------------------------------------------------------
    @property
    def archived_seq(self) -> int:
        """Every event up to this seq is in MongoDB (as reported by the child; monotonic)."""
        return self._archived_seq

    @property
    def lag(self) -> int:
        """Events the child holds and has not yet written (its last report)."""
        return self._lag

    def stopping(self) -> bool:
        """A method, not a property: it changes while `_supervise` awaits."""
        return self._stopping

    @property
    def pid(self) -> int | None:
        process = self._process
        return None if process is None or process.returncode is not None else process.pid

    async def wait_caught_up(self, seq: int, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until every event up to `seq` is written; False if `timeout` seconds pass first."""
        if self._archived_seq >= seq:
            return True
        return await self._waiters.wait(seq, timeout)

    async def load_archived_seq(self) -> int:
        """Read the stored `archived_seq` (where a new child starts) and adopt it if higher."""
        stored, _ = await read_archive_meta(self.db, self.meta_id)
        self._archived_seq = max(self._archived_seq, stored)
        return stored

    # -- the engine side (hot path) -------------------------------------------------------------
    def on_records(self, last_seq: int, data: bytes) -> None:
        """A group commit is durable: pass its framed records on. O(1), never awaits, never raises.

        They go down the pipe within `PIPE_FLUSH_INTERVAL` s, with the commits after them."""
        self._durable_seq = last_seq
        if not self._feeding:
            # No child right now: the next one reads these from the journal files.
            self.stats["dropped_while_down"] += 1
            return
        self._outgoing.append(data)
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(PIPE_FLUSH_INTERVAL, self._flush)

    def _flush(self) -> None:
        """Write the gathered group commits to the pipe in one call."""
        self._flush_timer = None
        outgoing, self._outgoing = self._outgoing, []
        process = self._process
        if not self._feeding or not outgoing or process is None or process.stdin is None:
            return
        stdin = process.stdin
        if stdin.is_closing():
            self._feeding = False
            return
        data = b"".join(outgoing)
        try:
            stdin.write(data)
        except (ConnectionError, RuntimeError):
            self._feeding = False  # the child is gone; the supervisor starts the next one
            return
        self.stats["records_bytes"] += len(data)
        self.stats["pipe_writes"] += 1
        if stdin.transport.get_write_buffer_size() > self.backlog_limit:
            # The child does not keep up (starved of CPU, or stuck). Rather than hold ever more of
            # the journal in this process's memory, drop what the pipe holds (the journal files
            # have it all) and close it: the child writes what it has and exits, and the next one
            # reads the rest from the files.
            self.stats["overflows"] += 1
            log.warning(
                "the archiver process is more than %d bytes behind; restarting it", self.backlog_limit
            )
            self._feeding = False
            self._overflowed = True
            stdin.transport.abort()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, durable_seq: int) -> None:
        """Start (and keep running) the child; `durable_seq`: the journal's last seq right now."""
        if self._supervisor is not None:
            return
        self._durable_seq = max(self._durable_seq, durable_seq)
        self._stopping = False
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="archiver-process")

    async def stop(
        self,
        flush: bool = True,
        flush_timeout: float | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (a kill follows, not a cancellation)
    ) -> None:
        """Close the pipe: the child writes what it holds (up to `flush_timeout` s) and exits.

        `timeout`: the most this waits for the child (default `flush_timeout` + 2 s); past it the
        child is killed (nothing is lost: the next one reads the journal)."""
        supervisor = self._supervisor
        if supervisor is None:
            return
        self._stopping = True
        process = self._process
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self._flush()
        self._feeding = False
        if process is not None and process.returncode is None:
            if not flush:
                process.kill()
            elif process.stdin is not None:
                process.stdin.close()
            # The supervisor reads the child's last report, then sees it exit.
            if timeout is None:
                timeout = (self.flush_timeout if flush_timeout is None else flush_timeout) + 2.0
            done, _ = await asyncio.wait({supervisor}, timeout=timeout)
            if not done:
                log.warning("the archiver process did not stop in %.1f s; killing it", timeout)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        supervisor.cancel()
        await asyncio.wait({supervisor})
        self._supervisor = None

    async def _supervise(self) -> None:
        delay = self.min_restart_delay
        while not self.stopping():
            started = time.monotonic()
            try:
                returncode = await self._run_child()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not run the archiver process")
                returncode = None
            if self.stopping():
                return
            if self._overflowed:
                self._overflowed = False
                log.info("the archiver process wrote what it had; the next one catches up from the journal")
                continue
            if time.monotonic() - started > 60:
                delay = self.min_restart_delay
            log.error(
                "the archiver process stopped (exit %s); starting it again in %.1f s "
                "(the journal keeps every event meanwhile)",
                returncode,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_restart_delay)

    async def _run_child(self) -> int:
        process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env=self.env,
        )
        self._process = process
        self.stats["starts"] += 1
        assert process.stdin is not None and process.stdout is not None
        # No await since the last on_records: every record after this seq goes down this pipe, and
        # whatever was gathered for the previous child is in the journal files up to it.
        self._outgoing.clear()
        process.stdin.write(_SEQ.pack(self._durable_seq))
        self._feeding = True
        try:
            await self._read_reports(process.stdout)
            return await process.wait()
        finally:
            self._feeding = False

    async def _read_reports(self, stdout: asyncio.StreamReader) -> None:
        while True:
            try:
                report = await stdout.readexactly(_REPORT.size)
            except asyncio.IncompleteReadError:
                return
            written_through, lag = _REPORT.unpack(report)
            self._lag = lag
            if written_through > self._archived_seq:
                self._archived_seq = written_through
                self._waiters.release_below(written_through + 1)


# -- the child -------------------------------------------------------------------------------------
class _Child:
    def __init__(self, args: argparse.Namespace, report_fd: int) -> None:
        self.args = args
        self.report_fd = report_fd
        self.client = mongo.connect(os.environ["GAVEL_ARCHIVER_MONGODB_URL"], app_name="gavel-archiver")
        self.db = self.client[args.mongodb_db]
        self.archiver = BidArchiver(self.db, engine_id=args.engine_id, **json.loads(args.options))
        shared = MongoSnapshotSink(self.db, prefix=args.snapshot_prefix)
        sink: MongoSnapshotSink | LocalFirstSnapshotSink = shared
        if args.snapshot_dir:
            sink = LocalFirstSnapshotSink(FileSnapshotSink(args.snapshot_dir), shared)
        self.replica = Engine(SystemClock(), Path(args.journal_dir), sink)
        self.archived_seq = 0
        self.stop = asyncio.Event()
        self.parent_gone = False  # the report pipe is closed

    def deliver(self, records: Iterable[tuple[int, bytes]]) -> None:
        batch = self.replica.follow(records, events_after=self.archived_seq)
        if batch is not None:
            self.archiver.on_batch(batch)
            # A closed lot is written at once (settlement waits for it); scanning costs this
            # process, not the engine's.
            if any(type(event) is LotClosed for event in batch.events):
                self.archiver.hurry()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        self.archived_seq = await self.archiver.load_archived_seq()
        durable_seq = _SEQ.unpack(await reader.readexactly(_SEQ.size))[0]
        self.archiver.start()
        await self.catch_up(durable_seq)
        reporter = loop.create_task(self.report_progress())
        ended = loop.create_task(self.stop.wait())
        framed = FramedRecordReader()
        try:
            while True:
                read = loop.create_task(reader.read(1 << 20))
                await asyncio.wait({read, ended}, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    read.cancel()
                    break
                data = read.result()
                if not data:
                    break  # the parent closed the pipe (or died)
                self.deliver(framed.feed(data))
        finally:
            await self.archiver.stop(flush=True, flush_timeout=self.args.flush_timeout)
            reporter.cancel()
            ended.cancel()
            self.report()
            await self.client.close()
        if framed.pending:
            log.warning("the pipe closed inside a record (%d bytes); the journal has it", framed.pending)
        return 0 if self.archiver.lag == 0 else 1

    async def catch_up(self, durable_seq: int) -> None:
        """From the newest snapshot, replay the journal files up to `durable_seq`."""
        latest = await self.replica.snapshot_sink.latest() if self.replica.snapshot_sink else None
        if latest is not None:
            self.replica.load_snapshot(latest[1])
        if self.replica.last_seq > self.archived_seq:
            log.error(
                "the newest snapshot (seq %d) is ahead of the archive (seq %d): events between "
                "them cannot be archived",
                self.replica.last_seq,
                self.archived_seq,
            )
        started, replayed = time.perf_counter(), 0
        piece: list[tuple[int, bytes]] = []
        for record in journal.recover(self.replica.journal_dir, self.replica.last_seq, read_only=True):
            if record[0] > durable_seq:
                break
            piece.append(record)
            if len(piece) >= _REPLAY_PIECE:
                replayed += len(piece)
                self.deliver(piece)
                piece = []
                await asyncio.sleep(0)  # the writer starts on what is queued meanwhile
        replayed += len(piece)
        self.deliver(piece)
        log.info(
            "archiver process caught up with the journal",
            extra={
                "durable_seq": durable_seq,
                "archived_seq": self.archived_seq,
                "replayed": replayed,
                "replay_s": round(time.perf_counter() - started, 3),
            },
        )

    def report(self) -> tuple[int, int]:
        message = (self.archiver.written_through(self.replica.last_seq), self.archiver.lag)
        if self.parent_gone:
            return message
        try:
            os.write(self.report_fd, _REPORT.pack(*message))
        except BrokenPipeError:
            # The parent is gone (killed, or it gave up waiting for us at its stop): nobody reads
            # progress any more, which is not worth a traceback. What was written is in MongoDB.
            self.parent_gone = True
        return message

    async def report_progress(self) -> None:
        last = self.report()
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            if (self.archiver.written_through(self.replica.last_seq), self.archiver.lag) != last:
                last = self.report()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m persistence.archive_process")
    parser.add_argument("--journal-dir", required=True)
    parser.add_argument("--mongodb-db", required=True)
    parser.add_argument("--snapshot-prefix", default="")
    parser.add_argument("--snapshot-dir", default="", help="the engine's local snapshots, read first")
    parser.add_argument("--engine-id", default="")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--options", default="{}", help="BidArchiver keyword arguments, as JSON")
    parser.add_argument("--flush-timeout", type=float, default=3.0)
    parser.add_argument("--nice", type=int, default=0, help="added to the process's nice value")
    parser.add_argument(
        "--cpu",
        choices=("idle", "normal"),
        default="normal",
        help="idle: Linux's SCHED_IDLE, the CPU only when nothing else wants it (--nice then matters little)",
    )
    return parser.parse_args(argv)


def set_idle_priority() -> bool:
    """Run this process under SCHED_IDLE where Linux offers it: an engine thread that wakes takes
    the CPU from it at once (with nice alone it may wait out the child's time slice, milliseconds on
    a bid's answer). Any user may lower its own priority. False where it is not available."""
    setter = getattr(os, "sched_setscheduler", None)
    policy = getattr(os, "SCHED_IDLE", None)
    if setter is None or policy is None:
        return False
    try:
        setter(0, policy, os.sched_param(0))
    except OSError as error:
        log.warning("could not switch to SCHED_IDLE: %s", error)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    setup_logging(args.log_level)
    if args.nice:
        os.nice(args.nice)
    if args.cpu == "idle":
        set_idle_priority()
    # Ctrl-C goes to the whole process group: the parent decides when the child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Reports get stdout to themselves: anything printed by mistake goes to stderr instead.
    report_fd = os.dup(1)
    os.dup2(2, 1)
    import uvloop

    async def run() -> int:
        return await _Child(args, report_fd).run()

    return uvloop.run(run())


if __name__ == "__main__":
    sys.exit(main())
