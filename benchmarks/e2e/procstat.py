"""CPU time of processes from /proc (Linux): utime + stime of every thread, in seconds."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid` (all its threads), or None when it is gone or /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of proc(5)


def archiver_pid(server_pid: int) -> int | None:
    """The write-behind process Gavel runs beside itself (persistence/archive_process.py), if any."""
    try:
        children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    except OSError:
        return None
    for pid in children:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"persistence.archive_process" in command:
            return int(pid)
    return None


def sample(pids: dict[str, int]) -> dict[str, float | None]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cores_used(
    before: dict[str, float | None], after: dict[str, float | None], seconds: float
) -> dict[str, float]:
    """Average cores each process used between two samples `seconds` apart."""
    used: dict[str, float] = {}
    for name, start in before.items():
        end = after.get(name)
        if start is not None and end is not None and seconds > 0:
            used[name] = round((end - start) / seconds, 3)
    return used
