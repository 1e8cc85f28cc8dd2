"""GPU and system sample parsing: what nvidia-smi and /proc print, including their N/A values."""

from __future__ import annotations

import sys

from agent.gpu import GpuSampler, NvmlGpuSampler, SmiGpuSampler, parse_nvidia_smi_csv
from agent.system import (SystemSampler, cpu_pct_between, parse_loadavg, parse_meminfo, parse_net_dev,
                          parse_proc_stat_cpu)

SMI = """\
0, NVIDIA H100 80GB HBM3, 87, 70123, 81559, 64, 512.33, 700.00
1, NVIDIA H100 80GB HBM3, [N/A], 10, 81559, [N/A], [Not Supported], 700.00
garbage line
x, bad index, 1, 2, 3, 4, 5, 6
"""


def test_nvidia_smi_rows_are_parsed_and_na_becomes_none():
    gpus = parse_nvidia_smi_csv(SMI)
    assert len(gpus) == 2
    first, second = gpus
    assert first.index == 0 and first.name == "NVIDIA H100 80GB HBM3"
    assert (first.utilization_pct, first.memory_used_mib, first.memory_total_mib) == (87.0, 70123.0, 81559.0)
    assert (first.temperature_c, first.power_w, first.power_limit_w) == (64.0, 512.33, 700.0)
    assert second.utilization_pct is None and second.temperature_c is None and second.power_w is None


def test_no_output_means_no_gpus():
    assert parse_nvidia_smi_csv("") == ()


async def test_the_default_sampler_reports_no_gpu_rather_than_inventing_one():
    assert await GpuSampler().sample() == ()


def test_proc_parsers():
    meminfo = "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\n"
    assert parse_meminfo(meminfo) == ((16000000 - 4000000) * 1024, 16000000 * 1024)
    assert parse_meminfo("nonsense") == (None, None)
    assert parse_loadavg("0.52 0.40 0.30 1/123 4567\n") == 0.52
    assert parse_loadavg("") is None
    before = parse_proc_stat_cpu("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
    after = parse_proc_stat_cpu("cpu  200 0 200 800 100 0 0 0 0 0\n")
    assert before == (200, 1000) and after == (400, 1300)
    assert cpu_pct_between(before, after) == round(100 * 200 / 300, 2)
    assert cpu_pct_between(None, after) is None
    net = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 999999      10    0    0    0     0          0         0   999999      10    0    0    0     0       0          0
  eth0: 1000      10    0    0    0     0          0         0     2000      10    0    0    0     0       0          0
  eth1: 5      1    0    0    0     0          0         0     7      1    0    0    0     0       0          0
"""
    assert parse_net_dev(net) == (1005, 2007)
    assert parse_net_dev("") is None


class _FakeNvml:
    """The handful of pynvml calls the sampler makes, with one unsupported reading."""

    class NVMLError(Exception):
        pass

    NVML_TEMPERATURE_GPU = 0

    class _Util:
        gpu = 42

    class _Mem:
        used = 3 * 2**30
        total = 80 * 2**30

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return f"handle-{index}"

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA H200"

    def nvmlDeviceGetUtilizationRates(self, handle):
        return self._Util()

    def nvmlDeviceGetMemoryInfo(self, handle):
        return self._Mem()

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 55

    def nvmlDeviceGetPowerUsage(self, handle):
        return 250_500  # milliwatts

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        raise self.NVMLError("not supported")


async def test_nvml_readings_are_converted_and_unsupported_ones_are_none():
    (gpu,) = await NvmlGpuSampler(_FakeNvml()).sample()
    assert (gpu.index, gpu.name, gpu.utilization_pct) == (0, "NVIDIA H200", 42.0)
    assert (gpu.memory_used_mib, gpu.memory_total_mib) == (3072.0, 81920.0)
    assert (gpu.temperature_c, gpu.power_w, gpu.power_limit_w) == (55.0, 250.5, None)


async def test_the_nvidia_smi_sampler_runs_the_binary_and_parses_it(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, NVIDIA L40S, 5, 100, 46068, 30, 80.5, 350.00'\n")
    smi.chmod(0o755)
    (gpu,) = await SmiGpuSampler(str(smi)).sample()
    assert gpu.name == "NVIDIA L40S" and gpu.memory_total_mib == 46068.0
    failing = tmp_path / "broken-smi"
    failing.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    failing.chmod(0o755)
    assert await SmiGpuSampler(str(failing)).sample() == ()


def test_the_proc_fallback_works_without_psutil(monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)  # makes `import psutil` raise ImportError
    sampler = SystemSampler()
    assert sampler.kind == "proc"
    sample = sampler.sample()
    assert sample is not None and sample.memory_total_bytes > 0 and sample.load1 is not None
