"""Ports the engine declares; adapters in persistence/ implement them."""

from typing import Protocol


class SnapshotSink(Protocol):
    """Stores whole-engine snapshots: msgpack bytes covering every journal record up to `seq`."""

    async def save(self, seq: int, blob: bytes) -> None: ...

    async def latest(self) -> tuple[int, bytes] | None: ...
