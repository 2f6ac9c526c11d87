"""gateway/roster.py: a session's subscribers as the hub's sweep walks them, in C and in Python."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.roster import PyOutlet, PyRoster

fanout = pytest.importorskip("gateway._fanout", reason="gateway/_fanout.c not built (build_fanout.py)")

FAR = 10**18  # a deadline never reached


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(100)]  # past the size at which sends split over two threads
    for a, b in made:
        a.setblocking(False)
        b.setblocking(False)
    yield made
    for a, b in made:
        a.close()
        b.close()


def ready(fd: int) -> Any:
    outlet = fanout.Outlet(fd)
    outlet.stream_ok = outlet.socket_ok = True
    return outlet


def test_a_sweep_sends_each_ready_subscriber_the_frames_from_its_position_and_hands_back_the_rest(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    roster = fanout.Roster()
    outlets = [ready(a.fileno()) for a, _ in pairs]
    outlets[5].socket_ok = False  # lagging
    outlets[6].stream_ok = False  # the transport holds bytes
    for n, outlet in enumerate(outlets):
        assert roster.add(outlet, f"owner{n}", 3 if n < 50 else 4) == n
    roster.set_position(7, 5)  # had everything already
    asked: list[int] = []

    def since(position: int) -> bytes:
        asked.append(position)
        return b"frames from %d" % position

    index, slow, short, frames, sends = roster.sweep(0, 5, since, FAR, 2, 256, 256)
    assert (index, slow, short) == (100, [5, 6], [])
    assert sends == 97 and frames == 47 * 2 + 50 * 1  # 2 frames from position 3, 1 from position 4
    assert asked == [3, 4]  # once per run of subscribers at one position
    for n, (_, peer) in enumerate(pairs):
        if n in (5, 6, 7):
            with pytest.raises(BlockingIOError):
                peer.recv(100)
        else:
            assert peer.recv(100) == (b"frames from 3" if n < 50 else b"frames from 4")
    assert [roster.position(n) for n in (4, 5, 6, 7, 99)] == [5, 3, 3, 5, 5]  # handed back: unchanged
    assert roster.owner(5) == "owner5"
    # Nothing is due at the same end any more but the two handed back.
    assert roster.sweep(0, 5, since, FAR, 2, 256, 256)[:4] == (100, [5, 6], [], 0)


def test_a_sweep_stops_at_the_deadline_and_the_cap_and_reports_short_sends(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    roster = fanout.Roster()
    for n, (a, _) in enumerate(pairs):
        roster.add(ready(a.fileno()), None, 0 if n == 3 else 1)  # slot 3 gets a large payload
    tiny, tiny_peer = pairs[3]
    tiny.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    tiny_peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    pairs[9][1].close()  # its peer is gone: EPIPE
    big = b"x" * 1_000_000

    def since(position: int) -> bytes:
        return big if position == 0 else b"small"

    # A deadline already past: one batch of 10, then back to the caller.
    past = time.monotonic_ns() - 1
    index, slow, short, frames, sends = roster.sweep(0, 2, since, past, 2, 10, 256)
    assert (index, slow, frames, sends) == (10, [], 11, 10)
    by_slot = {slot: (sent, before) for slot, sent, before in short}
    assert set(by_slot) == {3, 9}
    assert 0 < by_slot[3][0] < len(big) and by_slot[3][1] == 0
    assert by_slot[9][0] < 0 and by_slot[9][1] == 1
    assert roster.position(3) == 2  # moved: the caller hands the rest to the transport
    # The cap on slots handed back: with every outlet not ready, two at a time.
    for slot in range(10, 100):
        roster.remove(slot)
    for _ in range(4):
        assert roster.add(fanout.Outlet(-1), None, 0) in range(10, 100)  # freed slots are taken again
    assert len(roster) == 14
    index, slow, _, _, _ = roster.sweep(10, 2, lambda _p: b"", FAR, 2, 256, 2)
    assert len(slow) == 2 and index == slow[-1] + 1


def test_a_failing_since_sends_nothing_of_its_batch_and_loses_nothing_sent_before(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    roster = fanout.Roster()
    for n, (a, _) in enumerate(pairs[:20]):
        roster.add(ready(a.fileno()), None, 0 if n < 10 else 1)

    def since(position: int) -> bytes:
        if position == 1:
            raise LookupError("no such position")
        return b"ok"

    # The first batch (positions 0) goes; the second fails before sending: the call returns what
    # the first left, the error waits for the next call.
    index, slow, short, _frames, sends = roster.sweep(0, 2, since, FAR, 2, 10, 256)
    assert (index, slow, short, sends) == (10, [], [], 10)
    with pytest.raises(LookupError):
        roster.sweep(index, 2, since, FAR, 2, 10, 256)
    assert [roster.position(n) for n in (9, 10, 19)] == [2, 1, 1]
    with pytest.raises(TypeError):
        roster.sweep(10, 2, lambda _p: "not bytes", FAR, 2, 10, 256)
    with pytest.raises(KeyError):
        roster.position(20)


def test_the_python_roster_hands_every_due_slot_back() -> None:
    roster = PyRoster()
    slots = [roster.add(PyOutlet(-1), n, n % 3) for n in range(7)]
    roster.remove(slots[1])
    assert roster.add(PyOutlet(-1), "again", 0) == slots[1]
    assert roster.sweep(0, 2, lambda _p: b"", FAR, 2, 256, 3) == (4, [0, 1, 3], [], 0, 0)
    assert roster.sweep(4, 2, lambda _p: b"", FAR, 2, 256, 3) == (7, [4, 6], [], 0, 0)
    assert len(roster) == 7 and roster.size == 7 and roster.owner(1) == "again"
    with pytest.raises(KeyError):
        roster.remove(9)
