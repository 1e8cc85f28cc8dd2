"""System samples for heartbeats: psutil when installed (the ``agent`` extra), else Linux /proc,
else nothing (``None`` in the heartbeat). The /proc parsers are pure for tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from contracts.heartbeats import SystemSample

DISK_PATH = "/"


def parse_meminfo(text: str) -> tuple[int | None, int | None]:
    """(used, total) bytes; used = total - available, which is what "memory pressure" means."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key.strip()] = int(parts[0]) * 1024  # values are in kB
    total = fields.get("MemTotal")
    available = fields.get("MemAvailable")
    if total is None:
        return None, None
    return (total - available if available is not None else None), total


def parse_loadavg(text: str) -> float | None:
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return None


def parse_proc_stat_cpu(text: str) -> tuple[int, int] | None:
    """(busy, total) jiffies from the aggregate ``cpu`` line."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                values = [int(v) for v in parts[1:]]
            except ValueError:
                return None
            if len(values) < 4:
                return None
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            # guest time is already counted in user/nice; only the first 8 fields add up.
            total = sum(values[:8])
            return total - idle, total
    return None


def parse_net_dev(text: str) -> tuple[int, int] | None:
    """(rx, tx) bytes summed over interfaces other than loopback."""
    rx = tx = 0
    seen = False
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if name.strip() == "lo" or len(parts) < 9:
            continue
        try:
            rx += int(parts[0])
            tx += int(parts[8])
            seen = True
        except ValueError:
            continue
    return (rx, tx) if seen else None


def cpu_pct_between(prev: tuple[int, int] | None, cur: tuple[int, int] | None) -> float | None:
    if prev is None or cur is None or cur[1] <= prev[1]:
        return None
    return round(100.0 * (cur[0] - prev[0]) / (cur[1] - prev[1]), 2)


def _disk() -> tuple[int | None, int | None]:
    try:
        st = os.statvfs(DISK_PATH)
    except OSError:
        return None, None
    total = st.f_blocks * st.f_frsize
    return total - st.f_bfree * st.f_frsize, total


class SystemSampler:
    def __init__(self) -> None:
        self._psutil: Any = None
        self._prev_cpu: tuple[int, int] | None = None
        try:
            import psutil

            self._psutil = psutil
            psutil.cpu_percent(interval=None)  # the first call only primes the counter
        except ImportError:
            self._prev_cpu = self._read_cpu()
        self.kind = "psutil" if self._psutil is not None else ("proc" if Path("/proc/meminfo").exists() else "none")

    @staticmethod
    def _read(path: str) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None

    def _read_cpu(self) -> tuple[int, int] | None:
        text = self._read("/proc/stat")
        return parse_proc_stat_cpu(text) if text is not None else None

    def sample(self) -> SystemSample | None:
        try:
            if self._psutil is not None:
                return self._sample_psutil()
            if self.kind == "proc":
                return self._sample_proc()
        except Exception:  # a sampling hiccup must not cost a heartbeat
            return None
        return None

    def _sample_psutil(self) -> SystemSample:
        ps = self._psutil
        mem = ps.virtual_memory()
        disk_used, disk_total = _disk()
        # Loopback excluded, as in the /proc path: traffic to the local engine is not network load.
        nics = {name: c for name, c in ps.net_io_counters(pernic=True).items() if name != "lo"}
        return SystemSample(
            cpu_pct=float(ps.cpu_percent(interval=None)),
            load1=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            memory_used_bytes=int(mem.total - mem.available),
            memory_total_bytes=int(mem.total),
            disk_used_bytes=disk_used,
            disk_total_bytes=disk_total,
            net_rx_bytes_total=sum(int(c.bytes_recv) for c in nics.values()) if nics else None,
            net_tx_bytes_total=sum(int(c.bytes_sent) for c in nics.values()) if nics else None,
        )

    def _sample_proc(self) -> SystemSample:
        cur = self._read_cpu()
        cpu = cpu_pct_between(self._prev_cpu, cur)
        self._prev_cpu = cur
        meminfo = self._read("/proc/meminfo")
        used, total = parse_meminfo(meminfo) if meminfo is not None else (None, None)
        loadavg = self._read("/proc/loadavg")
        netdev = self._read("/proc/net/dev")
        net = parse_net_dev(netdev) if netdev is not None else None
        disk_used, disk_total = _disk()
        return SystemSample(
            cpu_pct=cpu,
            load1=parse_loadavg(loadavg) if loadavg is not None else None,
            memory_used_bytes=used,
            memory_total_bytes=total,
            disk_used_bytes=disk_used,
            disk_total_bytes=disk_total,
            net_rx_bytes_total=net[0] if net else None,
            net_tx_bytes_total=net[1] if net else None,
        )
