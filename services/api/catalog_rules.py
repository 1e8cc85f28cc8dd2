"""Which model may run on which instance type: a pure rule, shared by the API's validation and tests.

- A model whose ``metadata.provider_restriction`` names a provider runs only there.
- The mock provider (agent processes with a fake engine, no GPU) runs only models meant for it:
  ``provider_restriction: mock``, or models that declare no GPU memory (``required_vram_gb == 0``).
- Elsewhere the type's total GPU memory (``gpu_count × vram_per_gpu_gb``) must cover the model's.
"""

from __future__ import annotations

from typing import Any

MOCK_PROVIDER = "mock"


def incompatibility(
    *,
    provider_code: str,
    instance_type_code: str,
    gpu_count: int,
    vram_per_gpu_gb: int,
    required_vram_gb: int,
    metadata: dict[str, Any] | None,
) -> str | None:
    """Why the model cannot run on that type, or ``None`` when it can."""
    restriction = (metadata or {}).get("provider_restriction")
    if isinstance(restriction, str) and restriction and restriction != provider_code:
        return f"this model only runs on provider '{restriction}'"
    if provider_code == MOCK_PROVIDER:
        if restriction == MOCK_PROVIDER or required_vram_gb == 0:
            return None
        return "the mock provider only runs mock models (provider_restriction 'mock' or required_vram_gb 0)"
    available = gpu_count * vram_per_gpu_gb
    if available < required_vram_gb:
        return (f"needs {required_vram_gb} GB of GPU memory; {instance_type_code} has {gpu_count} x "
                f"{vram_per_gpu_gb} GB = {available} GB")
    return None
