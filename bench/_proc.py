"""What /proc says about one process: the benches' resource readings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class ProcStats(NamedTuple):
    fds: int | None  # open file descriptors
    rss_mb: float | None  # resident memory
    threads: int | None
    cpu_s: float | None  # user + system


def proc_stats(pid: int) -> ProcStats:
    """``pid``'s readings, all ``None`` if it is gone."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        return ProcStats(fds, int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"]), cpu)
    except (OSError, KeyError, IndexError, ValueError):
        return ProcStats(None, None, None, None)
