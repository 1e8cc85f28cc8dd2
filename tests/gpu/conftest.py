"""GPU tests: skipped unless vLLM, torch and transformers import and an NVIDIA GPU is visible.

The skip is decided here, at collection, so ``pytest tests/gpu`` on a CPU machine reports the
tests as skipped with the reason instead of failing or importing vLLM.
"""

from __future__ import annotations

import importlib.util

import pytest

from .stack import gpu_present

_MISSING = [name for name in ("vllm", "torch", "transformers") if importlib.util.find_spec(name) is None]


def pytest_collection_modifyitems(config, items):
    reason = None
    if _MISSING:
        reason = f"needs {', '.join(_MISSING)} (pip install -e '.[gpu]')"
    elif not gpu_present():
        reason = "needs an NVIDIA GPU (NVML or nvidia-smi found none)"
    if reason is None:
        return
    for item in items:
        if "tests/gpu/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.skip(reason=reason))
