"""CPU and memory of processes from /proc (read-only), and the arithmetic on the samples."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(stat_text: str) -> int:
    """utime + stime (clock ticks) from the text of /proc/<pid>/stat.

    The process name (field 2) may hold spaces and parentheses: fields are counted after its last ')'."""
    rest = stat_text[stat_text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(rest[11]) + int(rest[12])


def status_bytes(status_text: str, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmHWM, VmRSS) in bytes; 0 when absent (a zombie)."""
    for line in status_text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class CpuSample:
    """CPU ticks of a set of processes at one moment."""

    ticks: dict[int, int]

    @classmethod
    def of(cls, pids: list[int]) -> CpuSample:
        ticks = {}
        for pid in pids:
            try:
                ticks[pid] = cpu_ticks(Path(f"/proc/{pid}/stat").read_text())
            except (OSError, ValueError, IndexError):
                continue
        return cls(ticks)


def cpu_ms_per_item(before: CpuSample, after: CpuSample, items: int, hz: int = CLOCK_TICKS) -> float:
    """CPU milliseconds per item over the processes sampled both times (NaN if there were no items).

    A process gone by ``after`` counts nothing: its last ticks are unknown."""
    if items <= 0:
        return float("nan")
    spent = sum(after.ticks[pid] - before.ticks[pid] for pid in before.ticks if pid in after.ticks)
    return spent * 1000 / hz / items


def peak_rss(pid: int) -> int:
    """VmHWM of a running process, in bytes (0 if it is gone)."""
    try:
        return status_bytes(Path(f"/proc/{pid}/status").read_text(), "VmHWM")
    except OSError:
        return 0


def rss(pid: int) -> int:
    """VmRSS of a running process, in bytes (0 if it is gone)."""
    try:
        return status_bytes(Path(f"/proc/{pid}/status").read_text(), "VmRSS")
    except OSError:
        return 0


def broker_pid() -> int | None:
    """The shared RabbitMQ's beam.smp: BENCH_BROKER_PID, else the oldest beam.smp (extra cluster
    nodes of tests start later). Only read, never signalled."""
    if os.environ.get("BENCH_BROKER_PID"):
        return int(os.environ["BENCH_BROKER_PID"])
    found: list[tuple[int, int]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "beam.smp":
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        started = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22: starttime
        found.append((started, int(entry.name)))
    return min(found)[1] if found else None
