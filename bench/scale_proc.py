"""CPU and memory of process trees, read from /proc (Linux), for the scale benchmark.

CPU of a tree = utime + stime of every live process in it, plus the ``cutime + cstime``
of its root: the time of the children the root has already reaped. That is how the CPU of
PostgreSQL (a postmaster forks one backend per connection, and CONN_MAX_AGE 0 means one
per task) and of a prefork Celery worker is accounted without missing short-lived
processes. Only processes whose root is ours are read: the machine is shared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """Direct children of `pid` (a scan of /proc: no CONFIG_PROC_CHILDREN needed)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`."""
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def cpu_seconds(pid: int, *, reaped: bool = True) -> float:
    """utime + stime of one process (plus its reaped children's when `reaped`)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # After the command name: state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14.
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def tree_cpu_seconds(root: int) -> float:
    """CPU of `root` and everything under it, reaped children included (see module doc)."""
    total = cpu_seconds(root, reaped=True)
    for pid in descendants(root):
        # A descendant's own reaped children are counted too (celery's pool reaps nothing,
        # but a backend may have forked a parallel worker).
        total += cpu_seconds(pid, reaped=True)
    return total


@dataclass(frozen=True)
class Memory:
    pid: int
    rss_mb: float
    pss_mb: float  # proportional: pages shared after fork() are split between the sharers


def memory(pid: int) -> Memory | None:
    """RSS and PSS of a live process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    rss = _kb(status, "VmRSS:")
    pss = _kb(rollup, "Pss:")
    return Memory(pid, rss / 1024, pss / 1024)


def _kb(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0
