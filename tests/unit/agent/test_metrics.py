"""The agent's /metrics: GPU and machine readings appear as sampled, and nothing is invented."""

from __future__ import annotations

from agent.metrics import AgentMetrics
from contracts.heartbeats import GpuSample, SystemSample


def test_gpu_readings_are_exposed_per_gpu_and_missing_ones_stay_absent():
    metrics = AgentMetrics()
    metrics.set_gpus((GpuSample(index=0, utilization_pct=50.0, memory_used_mib=1024.0, memory_total_mib=81920.0,
                                temperature_c=61.0, power_w=300.5),
                      GpuSample(index=1, utilization_pct=7.0)))
    text = metrics.render().decode()
    for line in ('inventiv_agent_gpu_utilization_pct{gpu="0"} 50.0', 'inventiv_agent_gpu_temperature_c{gpu="0"} 61.0',
                 'inventiv_agent_gpu_power_w{gpu="0"} 300.5', 'inventiv_agent_gpu_memory_total_mib{gpu="0"} 81920.0',
                 'inventiv_agent_gpu_utilization_pct{gpu="1"} 7.0'):
        assert line in text
    assert 'inventiv_agent_gpu_temperature_c{gpu="1"}' not in text


def test_machine_readings_are_exposed_and_none_is_not_zero():
    metrics = AgentMetrics()
    assert "inventiv_agent_system_" not in metrics.render().decode()  # nothing sampled yet
    metrics.set_system(SystemSample(cpu_pct=12.5, memory_total_bytes=2048, net_rx_bytes_total=10))
    metrics.set_system(None)  # a failed sample keeps the last readings
    text = metrics.render().decode()
    assert "inventiv_agent_system_cpu_pct 12.5" in text
    assert "inventiv_agent_system_memory_total_bytes 2048.0" in text
    assert "inventiv_agent_system_net_rx_bytes_total 10.0" in text
    assert "inventiv_agent_system_disk_total_bytes" not in text
