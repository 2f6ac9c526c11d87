"""Snapshot sinks: where the engine's whole-book snapshots go (implements `engine.ports.SnapshotSink`).

Both keep the newest few snapshots and guarantee that `latest()` never returns a partial one:

* `FileSnapshotSink`: one file per snapshot, written to a temp file, fsynced, atomically renamed
  and the directory fsynced. A crash leaves at most a stray temp file, which is ignored and swept.
* `LocalFirstSnapshotSink`: both of the above, the file beside the journal read first at a restart.
* `MongoSnapshotSink`: a `snapshots` head document per seq; blobs over `CHUNK_SIZE` go to
  `snapshot_chunks` first and the head (carrying size and sha256) is written last, so a head only
  exists once every byte it names is stored. `latest()` re-verifies the sha256 and falls back to an
  older snapshot when the newest does not check out.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

from bson import Binary
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

__all__ = ["CHUNK_SIZE", "KEEP", "FileSnapshotSink", "LocalFirstSnapshotSink", "MongoSnapshotSink"]

log = logging.getLogger("gavel.snapshots")

KEEP = 3
"""How many snapshots each sink retains (the newest ones)."""

CHUNK_SIZE = 8 * 1024 * 1024
"""Largest piece of a blob stored in one MongoDB document (the hard limit is 16 MB per document)."""

# Hashing is done off the loop above this size: sha256 of 100 MB takes ~0.2 s (hashlib drops the GIL).
_HASH_OFF_LOOP = 1024 * 1024

_FILE_RE = re.compile(r"^snapshot-(\d{20})\.msgpack$")
_TMP_SUFFIX = ".tmp"


# --------------------------------------------------------------------------------------- files


class FileSnapshotSink:
    """Snapshots as `snapshot-{seq:020d}.msgpack` files in one directory (the raw msgpack blob)."""

    def __init__(self, directory: Path | str, *, keep: int = KEEP) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.directory = Path(directory)
        self.keep = keep
        # The engine may start a second save before the first finishes; one at a time keeps
        # the temp names and the pruning simple.
        self._lock = asyncio.Lock()

    def path_for(self, seq: int) -> Path:
        return self.directory / f"snapshot-{seq:020d}.msgpack"

    async def save(self, seq: int, blob: bytes) -> None:
        async with self._lock:
            await asyncio.to_thread(self._save_sync, seq, blob)

    async def latest(self) -> tuple[int, bytes] | None:
        return await asyncio.to_thread(self._latest_sync)

    async def seqs(self) -> list[int]:
        """The seqs of the stored snapshots, oldest first."""
        return await asyncio.to_thread(self._seqs_sync)

    # -- blocking parts (run in a worker thread) --------------------------------------------------
    def _save_sync(self, seq: int, blob: bytes) -> None:
        if seq < 0:
            raise ValueError("seq must not be negative")
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path_for(seq)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(blob)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        tmp.replace(final)
        # The rename is durable only once the directory entry is.
        _fsync_dir(self.directory)
        self._prune_sync()

    def _seqs_sync(self) -> list[int]:
        try:
            paths = list(self.directory.iterdir())
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for path in paths if (m := _FILE_RE.match(path.name)))

    def _latest_sync(self) -> tuple[int, bytes] | None:
        for seq in reversed(self._seqs_sync()):
            try:
                return seq, self.path_for(seq).read_bytes()
            except FileNotFoundError:  # pruned by a concurrent save between listing and reading
                continue
        return None

    def _prune_sync(self) -> None:
        seqs = self._seqs_sync()
        removed = False
        for seq in seqs[: -self.keep]:
            self.path_for(seq).unlink(missing_ok=True)
            removed = True
        # Temp files left by a crash mid-save (ours are done: saves are serialized).
        for path in self.directory.iterdir():
            if path.name.startswith(".snapshot-") and path.name.endswith(_TMP_SUFFIX):
                path.unlink(missing_ok=True)
                removed = True
        if removed:
            _fsync_dir(self.directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------- MongoDB


class SnapshotIntegrityError(RuntimeError):
    """A stored snapshot does not match the size or sha256 its head document records."""


class MongoSnapshotSink:
    """Snapshots in MongoDB: `snapshots` heads (`_id` = seq) and `snapshot_chunks` for large blobs.

    Head: `{_id: seq, complete: True, size, sha256, chunks, gen, saved_at, blob?}` where `blob`
    (BSON binary) is present for blobs up to `chunk_size` and `chunks` is the number of
    `snapshot_chunks` documents `{snapshot_seq, gen, n, data}` otherwise. `gen` is unique per save,
    so re-saving the same seq never mixes pieces of two saves: the old head stays valid until the
    new one replaces it atomically.
    """

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        *,
        keep: int = KEEP,
        chunk_size: int = CHUNK_SIZE,
        prefix: str = "",
    ) -> None:
        """`prefix` names one engine's collections when several engines share a database."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        if not 0 < chunk_size <= CHUNK_SIZE:
            raise ValueError(f"chunk_size must be in 1..{CHUNK_SIZE}")
        self.heads = db[prefix + "snapshots"]
        self.chunks = db[prefix + "snapshot_chunks"]
        self.keep = keep
        self.chunk_size = chunk_size
        self._lock = asyncio.Lock()
        self._indexed = False

    async def save(self, seq: int, blob: bytes) -> None:
        if seq < 0:
            raise ValueError("seq must not be negative")
        async with self._lock:
            await self._ensure_index()
            digest = await _sha256(blob)
            gen = uuid.uuid4().hex
            head: dict[str, Any] = {
                "complete": True,
                "size": len(blob),
                "sha256": digest,
                "gen": gen,
                "saved_at": datetime.datetime.now(datetime.UTC),
            }
            if len(blob) <= self.chunk_size:
                head["blob"] = Binary(blob)
                head["chunks"] = 0
            else:
                head["chunks"] = await self._write_chunks(seq, gen, blob)
            # Last: only now does this snapshot exist for latest().
            await self._write_head(seq, head)
            await self._prune(seq)

    async def latest(self) -> tuple[int, bytes] | None:
        async for head in self.heads.find({"complete": True}, {"blob": 0}).sort("_id", DESCENDING):
            seq = head["_id"]
            try:
                return seq, await self._load(head)
            except SnapshotIntegrityError as error:
                # A damaged snapshot must not stop recovery: the journal covers an older one too
                # as long as it has not been pruned past it.
                log.error("snapshot %d is unusable, trying an older one: %s", seq, error)
        return None

    async def seqs(self) -> list[int]:
        """The seqs of the complete stored snapshots, oldest first."""
        cursor = self.heads.find({"complete": True}, {"_id": 1}).sort("_id", ASCENDING)
        return [head["_id"] async for head in cursor]

    # -- internals --------------------------------------------------------------------------------
    async def _ensure_index(self) -> None:
        if not self._indexed:
            keys = [("snapshot_seq", ASCENDING), ("gen", ASCENDING), ("n", ASCENDING)]
            await self.chunks.create_index(keys)
            self._indexed = True

    async def _write_chunks(self, seq: int, gen: str, blob: bytes) -> int:
        view = memoryview(blob)
        count = 0
        for n, start in enumerate(range(0, len(blob), self.chunk_size)):
            # One insert per chunk: at most ~8 MiB in flight, never near the 48 MB message limit.
            data = Binary(bytes(view[start : start + self.chunk_size]))
            await self.chunks.insert_one({"snapshot_seq": seq, "gen": gen, "n": n, "data": data})
            count = n + 1
        return count

    async def _write_head(self, seq: int, head: dict[str, Any]) -> None:
        await self.heads.replace_one({"_id": seq}, head, upsert=True)

    async def _load(self, head: dict[str, Any]) -> bytes:
        seq = head["_id"]
        if head.get("chunks", 0) == 0:
            doc = await self.heads.find_one({"_id": seq, "gen": head["gen"]}, {"blob": 1})
            if doc is None or "blob" not in doc:
                raise SnapshotIntegrityError("the head has no blob")
            blob = bytes(doc["blob"])
        else:
            parts: list[bytes] = []
            cursor = self.chunks.find({"snapshot_seq": seq, "gen": head["gen"]}, {"n": 1, "data": 1})
            async for chunk in cursor.sort("n", ASCENDING):
                if chunk["n"] != len(parts):
                    raise SnapshotIntegrityError(f"chunk {len(parts)} is missing")
                parts.append(bytes(chunk["data"]))
            if len(parts) != head["chunks"]:
                raise SnapshotIntegrityError(f"{len(parts)} of {head['chunks']} chunks found")
            blob = b"".join(parts)
        if len(blob) != head["size"]:
            raise SnapshotIntegrityError(f"{len(blob)} bytes, the head says {head['size']}")
        if await _sha256(blob) != head["sha256"]:
            raise SnapshotIntegrityError("sha256 mismatch")
        return blob

    async def _prune(self, seq: int) -> None:
        """Keep the newest `keep` heads; drop older heads, then every chunk no kept head uses."""
        heads = [h async for h in self.heads.find({}, {"_id": 1, "gen": 1}).sort("_id", DESCENDING)]
        kept, dropped = heads[: self.keep], heads[self.keep :]
        if dropped:
            # Heads first: a crash after this leaves only orphan chunks, never a head without them.
            await self.heads.delete_many({"_id": {"$in": [h["_id"] for h in dropped]}})
        kept_gens = [h.get("gen") for h in kept]
        # Only chunks at or below the seq just saved: a later save may be writing chunks right now
        # (another process), and its head does not exist yet.
        result = await self.chunks.delete_many({"snapshot_seq": {"$lte": seq}, "gen": {"$nin": kept_gens}})
        if result.deleted_count:
            log.debug("pruned %d snapshot chunks", result.deleted_count)


async def _sha256(blob: bytes) -> str:
    if len(blob) < _HASH_OFF_LOOP:
        return hashlib.sha256(blob).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(blob).hexdigest())


# --------------------------------------------------------------------------------------- both


class LocalFirstSnapshotSink:
    """Each snapshot saved to a local directory (beside the journal) and then to MongoDB; a restart
    loads the local file when it is at least as new as MongoDB's newest.

    MongoDB stays the copy others read (gateways, the archiver process, another host taking over),
    but reading a large snapshot back from it is most of a restart's time: 80 MB (a million bids
    of history) took 20-40 s from the embedded MongoDB here, the same file 0.1 s from the disk
    (docs/performance.md, "Recovery after SIGKILL"). A save completes only once both copies are
    stored, so the journal is never pruned behind a snapshot that exists only locally.
    """

    def __init__(self, local: FileSnapshotSink, shared: MongoSnapshotSink) -> None:
        self.local = local
        self.shared = shared

    async def save(self, seq: int, blob: bytes) -> None:
        await self.local.save(seq, blob)
        await self.shared.save(seq, blob)

    async def latest(self) -> tuple[int, bytes] | None:
        local, shared = await asyncio.gather(self.local.seqs(), self.shared.seqs())
        if local and (not shared or local[-1] >= shared[-1]):
            found = await self.local.latest()
            if found is not None:
                return found
        # None locally, or an older one (a new disk, or the local save was lost): MongoDB's.
        return await self.shared.latest()
