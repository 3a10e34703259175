"""Measuring primitives: wrk runs, which process used how much of the cores
during a case, a process's resident memory, percentiles."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from .common import WRK_DIR, BenchError

USER_HZ = os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank, as the seedflow harness reports it."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def vm_kb(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    return {"vm_rss_kb": int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)),
            "vm_hwm_kb": int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))}


# --------------------------------------------------------------------------
# CPU accounting: which process used how much of the two cores in a case
# --------------------------------------------------------------------------


def proc_ticks(pid: int) -> int:
    """utime + stime of pid and all its descendants (nginx workers), in ticks."""
    total = 0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        total += proc_ticks(int(child))
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy ticks of every core, of which interrupt + softirq ticks). Loopback
    TCP is mostly processed in softirq context, charged to no process."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[:8])
    return user + nice + system + irq + softirq + steal, irq + softirq


class CpuMeter:
    def __init__(self, groups: dict[str, list[int]]):
        self.groups = groups

    def snapshot(self):
        return (
            {name: sum(proc_ticks(p) for p in pids) for name, pids in self.groups.items()},
            machine_ticks(),
            time.monotonic(),
        )

    @staticmethod
    def cores(before, after, wrk_ticks: int) -> dict[str, float]:
        """Cores used during the case, per process group; `kernel` is interrupt
        and softirq time (loopback networking), `other` is everything else on
        the machine (other processes: a noisy neighbour shows up here)."""
        groups_b, (busy_b, irq_b), t_b = before
        groups_a, (busy_a, irq_a), t_a = after
        secs = max(t_a - t_b, 1e-6)
        out = {n: (groups_a[n] - groups_b[n]) / USER_HZ / secs for n in groups_a}
        out["wrk"] = wrk_ticks / USER_HZ / secs
        out["kernel"] = (irq_a - irq_b) / USER_HZ / secs
        ours = sum(out.values())
        out["other"] = max((busy_a - busy_b) / USER_HZ / secs - ours, 0.0)
        return {k: round(v, 2) for k, v in out.items()}


# --------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------


def run_wrk(url: str, script: str, duration: float, threads: int, connections: int,
            headers=(), args=(), timeout_s: int = 30, stop_file: Path | None = None,
            stop_count: int = 0):
    """Runs wrk; returns (result dict from common.lua's done(), wrk CPU ticks).

    With `stop_file`, wrk is interrupted (SIGINT: it then reports and exits)
    once every thread has written its `<stop_file>.<tid>.done` marker."""
    duration = max(1, round(duration))
    cmd = wrk_command(url, script, duration, threads, connections, headers, args, timeout_s)
    proc = start_wrk(cmd)
    if stop_file is not None:
        deadline = time.monotonic() + duration
        while proc.poll() is None and time.monotonic() < deadline:
            done = sum(1 for t in range(threads) if Path(f"{stop_file}.{t}.done").exists())
            if done >= stop_count:
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.05)
    return finish_wrk(proc, cmd, duration)


def wrk_command(url: str, script: str, duration: float, threads: int, connections: int,
                headers=(), args=(), timeout_s: int = 30) -> list[str]:
    # wrk takes whole seconds.
    duration = max(1, round(duration))
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
           "--timeout", f"{timeout_s}s", "-s", str(WRK_DIR / script)]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    if args:
        cmd += ["--", *[str(a) for a in args]]
    return cmd


def start_wrk(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish_wrk(proc: subprocess.Popen, cmd: list[str], duration: float) -> dict:
    """Waits for a wrk started with start_wrk; its done() line as a dict."""
    out_b, err_b = proc.communicate(timeout=duration + 60)
    # Popen has reaped the child; its CPU is in our children's rusage.
    out, err = out_b.decode(errors="replace"), err_b.decode(errors="replace")
    line = next((l for l in out.splitlines() if l.startswith("WRK_JSON ")), None)
    if proc.returncode not in (0, None) or line is None:
        raise BenchError(f"wrk failed ({proc.returncode}): {' '.join(cmd)}\n{out}\n{err}")
    return json.loads(line[len("WRK_JSON "):])


def children_ticks() -> int:
    r = os.times()
    return round((r.children_user + r.children_system) * USER_HZ)

