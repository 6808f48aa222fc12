"""How many CPU threads a command computes with: `--threads N`, or chosen from the idle cores.

PyTorch's CPU kernels (and ours) split each operation over an OpenMP team whose threads wait
for each other at the end of every operation. On a machine where another job holds a core, a
team as large as the machine keeps waiting for the thread that was descheduled: a character
model then trains several times slower at 2 threads than at 1 (docs/performance.md, "Threads").
So the automatic choice is the number of cores idle right now, measured over a fifth of a
second from the kernel's CPU counters, never more than torch's own default (the physical cores)
and never fewer than one. `OMP_NUM_THREADS` or `--threads` set by the user always win.
"""
from __future__ import annotations

import os
import time

import torch

from unrolled.errors import UserError

SAMPLE_SECONDS = 0.2  # how long the CPU counters are watched
MAX_THREADS = 1024  # torch takes a C int; more than any machine this runs on has cores


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs since boot, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return idle, sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), not every core of the machine."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def idle_cores(seconds: float = SAMPLE_SECONDS) -> int:
    """Cores not busy with other work right now, at least 1.

    Measured from the CPU counters over `seconds` (Linux); elsewhere from the load average.
    """
    n = usable_cores()
    first = _cpu_times()
    if first is not None:
        time.sleep(seconds)
        second = _cpu_times()
        machine = os.cpu_count() or n
        total = second[1] - first[1]
        if total > 0:
            idle = machine * (second[0] - first[0]) / total  # idle cores of the whole machine
            return max(1, min(n, int(idle + 0.4)))  # a core 60% idle counts; one half busy does not
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        return n
    return max(1, min(n, round(n - busy)))


def choose(requested: int | None = None) -> int:
    """The thread count to use: `requested` if given, torch's when OMP_NUM_THREADS is set,
    else the idle cores (at most torch's default)."""
    if requested is not None:
        if requested < 1:
            raise UserError(f"--threads must be a positive integer, got {requested}")
        if requested > MAX_THREADS:
            raise UserError(f"--threads {requested} is more than the {MAX_THREADS} threads unrolled runs; "
                            f"give at most {MAX_THREADS}")
        return requested
    most = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS") or most == 1:  # the user's choice, or nothing to choose
        return most
    return min(most, idle_cores())


def use(requested: int | None = None) -> int:
    """Set torch's intra-op thread count by `choose` and return it."""
    n = choose(requested)
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n


def add_flag(parser, default_help: str = "the cores idle when the command starts") -> None:
    """`--threads N` on a command that computes."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help=f"CPU threads (default: {default_help}; more threads than idle cores only wait "
                             "for each other)")
