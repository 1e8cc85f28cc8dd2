"""GPU samples for heartbeats: NVML when ``pynvml`` imports, else ``nvidia-smi`` when on PATH,
else none at all. A machine without a GPU reports an empty tuple: numbers are never invented
(the original synthesised GPU load from queue depth).
"""

from __future__ import annotations

import asyncio
import csv
import shutil
from typing import Any

import structlog

from contracts.heartbeats import GpuSample

log = structlog.get_logger("agent.gpu")

SAMPLE_TIMEOUT_S = 5.0
SMI_QUERY = "index,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw,power.limit"


def _number(raw: str) -> float | None:
    raw = raw.strip()
    # nvidia-smi writes "[N/A]", "[Not Supported]", "N/A" for what a board does not report.
    try:
        return float(raw)
    except ValueError:
        return None


def parse_nvidia_smi_csv(text: str) -> tuple[GpuSample, ...]:
    """Rows of ``nvidia-smi --query-gpu=SMI_QUERY --format=csv,noheader,nounits``. Bad rows are skipped."""
    out: list[GpuSample] = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) != 8:
            continue
        index = _number(row[0])
        if index is None or index != int(index) or index < 0:
            continue
        name = row[1].strip() or None
        util, used, total, temp, power, limit = (_number(v) for v in row[2:])
        out.append(GpuSample(index=int(index), name=name, utilization_pct=util, memory_used_mib=used,
                             memory_total_mib=total, temperature_c=temp, power_w=power, power_limit_w=limit))
    return tuple(out)


class GpuSampler:
    """No GPU: the default, and what detection falls back to."""

    kind = "none"

    async def sample(self) -> tuple[GpuSample, ...]:
        return ()


class SmiGpuSampler(GpuSampler):
    kind = "nvidia-smi"

    def __init__(self, path: str) -> None:
        self.path = path

    async def sample(self) -> tuple[GpuSample, ...]:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.path, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        except OSError as exc:
            log.warning("gpu_sample_failed", sampler=self.kind, error=str(exc))
            return ()
        try:
            stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=SAMPLE_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("gpu_sample_failed", sampler=self.kind, error="nvidia-smi timed out")
            return ()
        if proc.returncode != 0:
            return ()  # e.g. driver not loaded: no GPU to report
        return parse_nvidia_smi_csv(stdout.decode("utf-8", "replace"))


class NvmlGpuSampler(GpuSampler):
    kind = "nvml"

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml

    def _read(self) -> tuple[GpuSample, ...]:
        nvml = self.nvml
        out = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)

            def attempt(fn: Any, *args: Any) -> Any:
                try:
                    return fn(*args)
                except nvml.NVMLError:
                    return None

            name = attempt(nvml.nvmlDeviceGetName, handle)
            util = attempt(nvml.nvmlDeviceGetUtilizationRates, handle)
            mem = attempt(nvml.nvmlDeviceGetMemoryInfo, handle)
            temp = attempt(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
            power = attempt(nvml.nvmlDeviceGetPowerUsage, handle)
            limit = attempt(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
            out.append(GpuSample(
                index=index,
                name=name.decode() if isinstance(name, bytes) else name,
                utilization_pct=float(util.gpu) if util is not None else None,
                memory_used_mib=mem.used / 2**20 if mem is not None else None,
                memory_total_mib=mem.total / 2**20 if mem is not None else None,
                temperature_c=float(temp) if temp is not None else None,
                power_w=power / 1000.0 if power is not None else None,  # NVML reports milliwatts
                power_limit_w=limit / 1000.0 if limit is not None else None,
            ))
        return tuple(out)

    async def sample(self) -> tuple[GpuSample, ...]:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._read), timeout=SAMPLE_TIMEOUT_S)
        except Exception as exc:  # NVML errors, driver resets, timeouts: report no GPU data this round
            log.warning("gpu_sample_failed", sampler=self.kind, error=repr(exc))
            return ()


def detect_gpu_sampler() -> GpuSampler:
    try:
        import pynvml  # type: ignore[import-not-found]  # from the nvidia-ml-py package (agent extra)

        pynvml.nvmlInit()
        return NvmlGpuSampler(pynvml)
    except ImportError:
        pass
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        log.info("nvml_unavailable", error=repr(exc))
    path = shutil.which("nvidia-smi")
    if path:
        return SmiGpuSampler(path)
    return GpuSampler()
